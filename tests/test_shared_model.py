"""WaferCNN shape, size and the weight digest."""

from __future__ import annotations

import copy

import pytest
import torch

from shared.config import CLASS_NAMES
from shared.model import WaferCNN, build_model, count_parameters, dihedral_views, tta_log_probs
from shared.runtime import state_digest


@pytest.mark.parametrize("size", [8, 32, 45, 64])
def test_output_shape(size):
    model = WaferCNN(base_channels=8).eval()
    with torch.no_grad():
        assert model(torch.rand(3, 1, size, size)).shape == (3, 9)


def expected_parameters(c: int, classes: int = 9, hidden: int = 256, pooled: int = 4) -> int:
    conv = lambda cin, cout: 3 * 3 * cin * cout + 2 * cout  # noqa: E731  (no conv bias; BN weight + bias)
    features = conv(1, c) + conv(c, 2 * c) + conv(2 * c, 4 * c)
    classifier = (4 * c * pooled * pooled) * hidden + hidden + hidden * classes + classes
    return features + classifier


@pytest.mark.parametrize("c", [8, 32])
def test_parameter_count_matches_the_architecture(c):
    assert count_parameters(WaferCNN(base_channels=c)) == expected_parameters(c)


def test_build_model_follows_the_config(tiny_cfg):
    model = build_model(tiny_cfg.replace(base_channels=16, dropout=0.1))
    assert count_parameters(model) == expected_parameters(16)
    assert model.classifier[-1].out_features == len(CLASS_NAMES)
    assert any(isinstance(m, torch.nn.Dropout) and m.p == 0.1 for m in model.modules())


def test_frozen_parameters_are_not_counted():
    model = WaferCNN(base_channels=8)
    model.features.requires_grad_(False)
    assert count_parameters(model) == expected_parameters(8) - sum(p.numel() for p in model.features.parameters())


def test_state_digest_tracks_weights():
    torch.manual_seed(0)
    a = WaferCNN(base_channels=8)
    torch.manual_seed(0)
    b = WaferCNN(base_channels=8)
    assert state_digest(a) == state_digest(b) == state_digest(copy.deepcopy(a))
    torch.manual_seed(1)
    assert state_digest(WaferCNN(base_channels=8)) != state_digest(a)

    before = copy.deepcopy(b.state_dict())
    optimizer = torch.optim.SGD(b.parameters(), lr=0.1)
    loss = torch.nn.functional.cross_entropy(b(torch.rand(4, 1, 16, 16)), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    optimizer.step()
    assert state_digest(b) != state_digest(a)
    b.load_state_dict(before)
    assert state_digest(b) == state_digest(a)


def test_state_digest_sees_buffers():
    model = WaferCNN(base_channels=8)
    digest = state_digest(model)
    model.features[0][1].running_mean += 1e-6  # a BatchNorm statistic, not a parameter
    assert state_digest(model) != digest


def test_dihedral_views_are_the_8_distinct_symmetries_identity_first():
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).reshape(2, 1, 4, 4)
    views = list(dihedral_views(x))
    assert len(views) == 8 and torch.equal(views[0], x)
    assert len({tuple(v.flatten().tolist()) for v in views}) == 8


def test_tta_probabilities_are_invariant_under_rotation_and_flip_unlike_the_plain_ones():
    torch.manual_seed(0)
    model = WaferCNN(base_channels=8).eval()
    x = torch.rand(4, 1, 16, 16)
    turned, flipped = torch.rot90(x, 1, dims=(-2, -1)), x.flip(-1)
    with torch.no_grad():
        tta = tta_log_probs(model, x)
        assert torch.allclose(tta.exp().sum(1), torch.ones(4))  # log-probabilities of a distribution
        assert torch.allclose(tta_log_probs(model, turned), tta, atol=1e-6)
        assert torch.allclose(tta_log_probs(model, flipped), tta, atol=1e-6)
        assert not torch.allclose(model(turned).log_softmax(1), model(x).log_softmax(1), atol=1e-6)
        mean = torch.stack([model(v).softmax(1) for v in dihedral_views(x)]).mean(0)
        assert torch.allclose(tta.exp(), mean, atol=1e-6)  # the mean of the 8 softmaxes
