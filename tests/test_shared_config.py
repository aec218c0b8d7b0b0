"""TrainConfig validation and the CLI generated from it."""

from __future__ import annotations

import dataclasses
import re

import pytest

from shared.cli import FEATURE_FIELDS, GROUPS, RUN_FIELDS, build_parser, group_of, parse_config
from shared.config import TrainConfig


@pytest.mark.parametrize(("changes", "field", "value"), [
    ({"epochs": -1}, "epochs", "-1"),
    ({"epochs": 0}, "epochs", "0"),
    ({"batch_size": 0}, "batch_size", "0"),
    ({"image_size": 4}, "image_size", "4"),
    ({"patience": -2}, "patience", "-2"),
    ({"lr": 0.0}, "lr", "0.0"),
    ({"lr": float("nan")}, "lr", "nan"),
    ({"dropout": 1.0}, "dropout", "1.0"),
    ({"seed": -1}, "seed", "-1"),
    ({"seed": 2**32}, "seed", str(2**32)),
    ({"val_fraction": 0.0}, "val_fraction", "0.0"),
    ({"val_fraction": 1.0}, "val_fraction", "1.0"),
    ({"test_fraction": -0.1}, "test_fraction", "-0.1"),
    ({"test_fraction": 1.5}, "test_fraction", "1.5"),
    ({"val_fraction": 0.5, "test_fraction": 0.5}, "val_fraction", "0.5"),
    ({"val_fraction": 0.6, "test_fraction": 0.45}, "val_fraction", "0.6"),
    ({"accelerator": "tpu"}, "accelerator", "'tpu'"),
    ({"precision": "16-mixed"}, "precision", "'16-mixed'"),
    ({"strategy": "fsdp"}, "strategy", "'fsdp'"),
    ({"monitor": "val_f1"}, "monitor", "'val_f1'"),
    ({"samples_per_class": 0}, "samples_per_class", "0"),  # 0 means "no cap" only for real data
    ({"data": "/no/such/file.pkl"}, "data", "'/no/such/file.pkl'"),
    ({"resume": "/no/such/last.ckpt"}, "resume", "'/no/such/last.ckpt'"),
    ({"lr_schedule": "step"}, "lr_schedule", "'step'"),
    ({"label_smoothing": 1.0}, "label_smoothing", "1.0"),
    ({"label_smoothing": float("nan")}, "label_smoothing", "nan"),
    ({"warmup_epochs": -1}, "warmup_epochs", "-1"),
    ({"lr_schedule": "cosine", "epochs": 3, "warmup_epochs": 3}, "warmup_epochs", "3"),
])
def test_invalid_value_raises_naming_field_and_value(changes, field, value):
    with pytest.raises(ValueError) as err:
        TrainConfig(**changes)
    assert str(err.value).startswith(f"{field}={value} ")


def test_valid_edge_values_are_accepted(tmp_path):
    data = tmp_path / "lswmd.pkl"
    data.write_bytes(b"x")
    ckpt = tmp_path / "epoch=3.ckpt"
    ckpt.write_bytes(b"x")
    cfg = TrainConfig(data=str(data), samples_per_class=0, resume=str(ckpt), image_size=8, dropout=0.0,
                      val_fraction=0.49, test_fraction=0.49, seed=0, accelerator="cpu", monitor="val_acc")
    assert cfg.monitor_mode == "max"
    assert TrainConfig(resume="last").resume == "last"
    assert TrainConfig().monitor_mode == "min"


def test_replace_validates_and_config_is_frozen(tiny_cfg):
    assert tiny_cfg.replace(epochs=5).epochs == 5
    with pytest.raises(ValueError, match="epochs"):
        tiny_cfg.replace(epochs=0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        tiny_cfg.epochs = 3  # type: ignore[misc]
    assert tiny_cfg.to_dict()["epochs"] == 2
    assert tiny_cfg.checkpoint_dir.name == "checkpoints"


def test_parse_config_every_flag_kind(tmp_path):
    ckpt = tmp_path / "last.ckpt"
    ckpt.write_bytes(b"x")
    cfg = parse_config("prog", "d", [
        "--epochs", "7",                    # int
        "--lr", "0.05",                     # float
        "--no-balance-classes",             # bool off
        "--augment",                        # bool on
        "--accelerator", "cpu",             # choices
        "--precision", "bf16-mixed",
        "--monitor", "val_acc",
        "--resume", str(ckpt),              # optional str
        "--output-dir", str(tmp_path / "o"),
        "--samples-per-class", "20",
    ])
    assert (cfg.epochs, cfg.lr, cfg.samples_per_class) == (7, 0.05, 20)
    assert isinstance(cfg.epochs, int) and isinstance(cfg.lr, float)
    assert cfg.balance_classes is False and cfg.augment is True
    assert (cfg.accelerator, cfg.precision, cfg.monitor) == ("cpu", "bf16-mixed", "val_acc")
    assert cfg.resume == str(ckpt) and cfg.output_dir == str(tmp_path / "o")


def test_parse_config_defaults_equal_dataclass_defaults():
    assert parse_config("prog", "d", []) == TrainConfig()
    assert parse_config("prog", "d", ["--balance-classes"]).balance_classes is True
    assert parse_config("prog", "d", ["--resume", "last"]).resume == "last"


def test_help_lists_every_field_with_its_help_text(capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_config("prog", "d", ["--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # undo argparse's line wrapping
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        assert re.search(re.escape(flag) + r"\b", text), flag
        assert " ".join(f.metadata["help"].split()) in text, f.name
        if f.type == "bool":
            assert "--no-" + f.name.replace("_", "-") in text
    assert "(default: None)" not in text  # a flag without a default says what it does instead


def test_every_field_gets_a_parser_flag():
    dests = {a.dest for a in build_parser("p", "d")._actions} - {"help"}
    assert dests == {f.name for f in dataclasses.fields(TrainConfig)}


@pytest.mark.parametrize(("argv", "flag"), [
    (["--epochs", "-1"], "--epochs"),
    (["--epochs", "abc"], "--epochs"),
    (["--accelerator", "tpu"], "--accelerator"),
    (["--data", "/no/such/file"], "--data"),
    (["--resume", "/no/such/file.ckpt"], "--resume"),
    (["--val-fraction", "0.5", "--test-fraction", "0.5"], "--val-fraction"),
    (["--image-size", "4"], "--image-size"),
    (["--seed", "-3"], "--seed"),
])
def test_bad_value_exits_2_naming_the_flag(argv, flag, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_config("prog", "d", argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flag}" in err
    assert argv[1] in err  # the offending value is quoted back


def test_class_weight_power_needs_class_weights_and_a_positive_value():
    assert TrainConfig(class_weights=True, class_weight_power=0.5).class_weight_power == 0.5
    with pytest.raises(ValueError, match="class_weight_power=0.5 needs --class-weights"):
        TrainConfig(class_weight_power=0.5)
    for bad, why in ((0.0, "must be > 0"), (-1.0, "must be > 0"), (float("nan"), "must be finite"),
                     (float("inf"), "must be finite")):
        with pytest.raises(ValueError, match=why):
            TrainConfig(class_weights=True, class_weight_power=bad)


def test_sampler_power_needs_the_balanced_sampler_and_a_value_in_0_1():
    assert TrainConfig(sampler="balanced", sampler_power=0.5).sampler_power == 0.5
    assert TrainConfig(sampler="balanced", sampler_power=0.0).sampler_power == 0.0
    with pytest.raises(ValueError, match="sampler_power=0.5 needs --sampler balanced"):
        TrainConfig(sampler_power=0.5)
    with pytest.raises(ValueError, match=r"sampler='weighted' must be one of \('shuffle', 'balanced'\)"):
        TrainConfig(sampler="weighted")
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match=r"must be in \[0, 1\]"):
            TrainConfig(sampler="balanced", sampler_power=bad)


def test_compile_mode_needs_compile():
    assert TrainConfig(compile=True, compile_mode="reduce-overhead").compile_mode == "reduce-overhead"
    with pytest.raises(ValueError, match="compile_mode='reduce-overhead' needs --compile"):
        TrainConfig(compile_mode="reduce-overhead")


@pytest.mark.parametrize("name", [f.name for f in dataclasses.fields(TrainConfig) if f.type in (float, "float")])
def test_nan_is_called_not_finite_in_every_float_field(name):
    with pytest.raises(ValueError, match=rf"{name}=nan must be finite"):
        TrainConfig(**{name: float("nan")})


def test_experiment_facts_name_the_data_by_content_and_count_the_processes(tmp_path, monkeypatch):
    from shared.config import experiment_changes
    from shared.data import experiment_facts
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.pkl").write_bytes(b"maps")
    cfg = TrainConfig(data=str(tmp_path / "a.pkl"))
    stored = {**cfg.to_dict(), **experiment_facts(cfg, world_size=2)}
    relative = TrainConfig(data="a.pkl")
    assert experiment_changes(stored, relative, experiment_facts(relative, 2)) == []  # the same file, another path
    assert experiment_changes(stored, relative, experiment_facts(relative, 1)) == ["world_size=2 (now 1)"]
    (tmp_path / "a.pkl").write_bytes(b"other maps")
    assert experiment_changes(stored, relative, experiment_facts(relative, 2))[0].startswith(f"data={cfg.data!r} sha256 ")
    older = cfg.to_dict()  # a checkpoint from before the facts were stored: its data is its path
    assert experiment_changes(older, relative, experiment_facts(relative, 1)) == [f"data={cfg.data!r} (now 'a.pkl')"]


def test_help_lists_each_flag_under_its_group(capsys):
    assert set(RUN_FIELDS + FEATURE_FIELDS) <= {f.name for f in dataclasses.fields(TrainConfig)}
    with pytest.raises(SystemExit):
        parse_config("prog", "d", ["--help"])
    text = capsys.readouterr().out.split("\noptions:\n", 1)[1]  # after the usage block, which lists every flag
    starts = {title: text.index(f"\n{title}:\n") for title in GROUPS}
    assert list(starts) == sorted(starts, key=starts.get)  # experiment, run, features
    ends = dict(zip(GROUPS, [*list(starts.values())[1:], len(text)]))
    for f in dataclasses.fields(TrainConfig):
        section = text[starts[group_of(f.name)]:ends[group_of(f.name)]]
        assert re.search(r"\n  --" + re.escape(f.name.replace("_", "-")) + r"\b", section), f.name
    assert group_of("seed") == "experiment" and group_of("resume") == "run" and group_of("plots") == "features"
