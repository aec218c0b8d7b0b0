"""Synthetic WM-811K-style wafer maps, the embedded default dataset (no download).

Codes follow LSWMD.pkl: 0 = no die, 1 = good die, 2 = failed die. Every map has background
failures (real 'none' wafers are noisy), patterns lose dies at random, grid sizes vary and
every map is randomly rotated/flipped, so the classes overlap as they do on real wafers.
"""

from __future__ import annotations

import numpy as np

from shared.config import CLASS_NAMES

# (rows, cols) of the most common WM-811K grids; drawn independently of the class so size leaks nothing
GRID_SHAPES = ((25, 27), (27, 25), (26, 26), (38, 36), (33, 37), (32, 29), (45, 48), (53, 52))
# class counts of the labelled WM-811K subset: the proportions used when balance_classes is off
WM811K_CLASS_COUNTS = {"Center": 2104, "Donut": 272, "Edge-Loc": 2543, "Edge-Ring": 4743, "Loc": 1760,
                       "Near-full": 73, "Random": 424, "Scratch": 585, "none": 17997}
# fewest maps of a class kept when proportions are scaled down: a stratified 70/15/15 split needs >= 7
# to put the class in every split (Near-full would otherwise round to 1 and sklearn refuses to split)
MIN_MAPS_PER_CLASS = 10


def wafer_grid(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mask of dies on the wafer plus each die's normalised radius (0..1) and angle (-pi..pi)."""
    rows, cols = shape
    y = (np.arange(rows) - (rows - 1) / 2) / (rows / 2)
    x = (np.arange(cols) - (cols - 1) / 2) / (cols / 2)
    yy, xx = np.meshgrid(y, x, indexing="ij")
    r = np.hypot(yy, xx)
    return r <= 1.0, np.clip(r, 0, 1), np.arctan2(yy, xx)


def _angle_within(theta: np.ndarray, centre: float, half_width: float) -> np.ndarray:
    return np.abs(np.angle(np.exp(1j * (theta - centre)))) <= half_width


def _pattern(name: str, rng: np.random.Generator, r: np.ndarray, theta: np.ndarray,
             shape: tuple[int, int]) -> np.ndarray:
    """Boolean region of the defect pattern (before die dropout)."""
    if name == "Center":
        return r <= rng.uniform(0.33, 0.55)
    if name == "Donut":
        inner = rng.uniform(0.22, 0.4)
        ring = r >= inner
        ring &= r <= inner + rng.uniform(0.22, 0.35)
        # real donuts are often broken: drop an arc now and then
        if rng.random() < 0.4:
            ring &= ~_angle_within(theta, rng.uniform(-np.pi, np.pi), rng.uniform(0.3, 1.2))
        return ring
    if name == "Edge-Loc":
        return (r >= rng.uniform(0.6, 0.8)) & _angle_within(theta, rng.uniform(-np.pi, np.pi), rng.uniform(0.4, 1.2))
    if name == "Edge-Ring":
        ring = r >= rng.uniform(0.9, 0.97)
        if rng.random() < 0.3:  # partial rings shade into Edge-Loc, as on real wafers
            ring &= ~_angle_within(theta, rng.uniform(-np.pi, np.pi), rng.uniform(0.4, 1.4))
        return ring
    if name == "Loc":
        rho, phi = rng.uniform(0.15, 0.7), rng.uniform(-np.pi, np.pi)
        cy, cx = rho * np.sin(phi), rho * np.cos(phi)
        yy, xx = r * np.sin(theta), r * np.cos(theta)
        ry, rx = rng.uniform(0.18, 0.38, size=2)
        return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
    if name == "Scratch":
        return _scratch(rng, r, theta, shape)
    return np.zeros_like(r, dtype=bool)  # Near-full, Random and none are pure failure rates


def _scratch(rng: np.random.Generator, r: np.ndarray, theta: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A thin, slightly curved line of dies crossing part of the wafer."""
    yy, xx = r * np.sin(theta), r * np.cos(theta)
    start = rng.uniform(-0.6, 0.6, size=2)
    direction = rng.uniform(-np.pi, np.pi)
    length, bend = rng.uniform(0.6, 1.5), rng.uniform(-0.8, 0.8)
    width = rng.uniform(0.6, 1.3) * 2.0 / min(shape)  # about one die wide
    t = np.linspace(0.0, length, 80)
    heading = direction + bend * t
    path_y = start[0] + np.cumsum(np.sin(heading)) * (t[1] - t[0])
    path_x = start[1] + np.cumsum(np.cos(heading)) * (t[1] - t[0])
    dist = np.min(np.hypot(yy[..., None] - path_y, xx[..., None] - path_x), axis=-1)
    return dist <= width


def make_wafer_map(name: str, rng: np.random.Generator) -> np.ndarray:
    """One uint8 wafer map of class `name` with codes 0/1/2."""
    shape = GRID_SHAPES[rng.integers(len(GRID_SHAPES))]
    on_wafer, r, theta = wafer_grid(shape)
    # background failure rate: 'none' wafers are the noisiest of the pattern-free ones (median ~0.15)
    if name == "none":
        background = rng.beta(2.2, 11.0)
    elif name == "Random":
        background = rng.uniform(0.3, 0.7)
    elif name == "Near-full":
        background = rng.uniform(0.75, 0.97)
    else:
        background = rng.beta(2.0, 18.0)
    failed = rng.random(shape) < background
    region = _pattern(name, rng, r, theta, shape)
    # die dropout: a pattern never fails every one of its dies
    failed |= region & (rng.random(shape) < rng.uniform(0.55, 0.95))
    wafer = np.where(on_wafer, np.where(failed, 2, 1), 0).astype(np.uint8)
    wafer = np.rot90(wafer, k=rng.integers(4))
    return np.ascontiguousarray(wafer[:, ::-1] if rng.random() < 0.5 else wafer)


def class_counts(samples_per_class: int, balance_classes: bool) -> dict[str, int]:
    """Maps per class: equal, or WM-811K's proportions with the largest class at samples_per_class.

    Unbalanced counts never drop below MIN_MAPS_PER_CLASS (nor exceed samples_per_class).
    """
    if balance_classes:
        return {name: samples_per_class for name in CLASS_NAMES}
    largest = max(WM811K_CLASS_COUNTS.values())
    floor = min(MIN_MAPS_PER_CLASS, samples_per_class)
    return {name: max(floor, round(samples_per_class * WM811K_CLASS_COUNTS[name] / largest)) for name in CLASS_NAMES}


def generate_wafer_maps(samples_per_class: int = 100, balance_classes: bool = True,
                        seed: int = 42) -> tuple[list[np.ndarray], np.ndarray]:
    """Deterministic list of variable-size maps and their label indices (CLASS_NAMES order)."""
    rng = np.random.default_rng(seed)
    maps, labels = [], []
    for label, (name, count) in enumerate(class_counts(samples_per_class, balance_classes).items()):
        for _ in range(count):
            maps.append(make_wafer_map(name, rng))
            labels.append(label)
    return maps, np.asarray(labels, dtype=np.int64)


def fail_fraction(wafer: np.ndarray) -> float:
    """Failed dies over dies on the wafer (the statistic the WM-811K README quotes per class)."""
    dies = np.count_nonzero(wafer)
    return float(np.count_nonzero(wafer == 2) / dies) if dies else 0.0
