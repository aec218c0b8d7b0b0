"""One frozen configuration read by both implementations, validated on construction."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

from shared.errors import ConfigError, TrainingError

CLASS_NAMES: tuple[str, ...] = (
    "Center", "Donut", "Edge-Loc", "Edge-Ring", "Loc", "Near-full", "Random", "Scratch", "none",
)
ACCELERATORS = ("cpu", "gpu", "auto")
STRATEGIES = ("auto", "ddp")
PRECISIONS = ("32", "bf16-mixed")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")
LR_SCHEDULES = ("constant", "cosine")
SAMPLERS = ("shuffle", "balanced")
MONITORS = {"val_loss": "min", "val_acc": "max"}
FEATURES = ("tensorboard", "progress_bar", "checkpoints", "early_stopping")  # TrainConfig.uses(feature)
# both sides redraw the bar every this many steps (and at an epoch's last), reading the loss on the host only
# then: Lightning's TQDMProgressBar(refresh_rate=...) cadence, so the bar is the same work on both sides
BAR_REFRESH_STEPS = 10
MAX_IMAGE_SIZE = 512
FLOAT32_MAX = 3.4028234663852886e38


def _opt(help_text: str, *, resume_safe: bool = False, **extra) -> dict:
    """Field metadata: help text and `choices` for the CLI builder; `resume_safe` if a resume may change it."""
    # the default (also for a field added later without thinking of resume) is the safe one: the field
    # defines the experiment, and a checkpoint trained with another value is refused rather than continued
    return {"help": help_text, "resume_safe": resume_safe, **extra}


@dataclass(frozen=True)
class TrainConfig:
    """Every knob both implementations use; the CLI is generated from these fields."""

    # data
    data: str = field(default="synthetic", metadata=_opt("'synthetic' or the path of an LSWMD-format pickle"))
    samples_per_class: int = field(default=100, metadata=_opt("maps per class (synthetic) / cap per class of the training split (real; 0 = no cap)"))
    balance_classes: bool = field(default=True, metadata=_opt("equal class counts; off keeps WM-811K's class proportions"))
    # 32 covers the most common WM-811K grids (25x27 .. 33x37) without losing a die, and keeps a
    # 2-core CPU epoch near a second; larger maps are downsampled (nearest neighbour)
    image_size: int = field(default=32, metadata=_opt("side of the square grid every map is resized to"))
    val_fraction: float = field(default=0.15, metadata=_opt("fraction of maps held out for validation"))
    test_fraction: float = field(default=0.15, metadata=_opt("fraction of maps held out for the final test"))
    augment: bool = field(default=False, metadata=_opt("random flips and 90-degree rotations of training maps"))
    seed: int = field(default=42, metadata=_opt("seed for data generation, splits, weights and shuffling"))
    # model
    base_channels: int = field(default=32, metadata=_opt("channels of WaferCNN's first conv block"))
    dropout: float = field(default=0.3, metadata=_opt("dropout rate before the classifier"))
    # optimisation
    epochs: int = field(default=30, metadata=_opt("maximum number of epochs", resume_safe=True))
    batch_size: int = field(default=32, metadata=_opt("batch size per process"))
    lr: float = field(default=1e-3, metadata=_opt("Adam learning rate"))
    weight_decay: float = field(default=0.0, metadata=_opt("Adam weight decay"))
    lr_schedule: str = field(default="constant", metadata=_opt(
        "learning rate per optimizer step: constant, or linear warm-up then cosine decay to 0 at the last epoch",
        choices=LR_SCHEDULES))
    warmup_epochs: int = field(default=1, metadata=_opt("epochs of linear warm-up (--lr-schedule cosine)"))
    label_smoothing: float = field(default=0.0, metadata=_opt("cross-entropy label smoothing"))
    class_weights: bool = field(default=False, metadata=_opt("weight the loss by inverse class frequency"))
    # balanced weights (power 1) train for equal classes; where the test has the natural mix (59 % 'none' on
    # WM-811K) they pay for rare-class recall with precision, and a power < 1 moves between the two
    class_weight_power: float = field(default=1.0, metadata=_opt(
        "exponent on the --class-weights weights: 1 balances the training split, 0.5 is their square root"))
    # the loss weights' alternative (or companion): rare classes are seen more often instead of weighing more
    sampler: str = field(default="shuffle", metadata=_opt(
        "training order: each map once per epoch (shuffle), or as many maps drawn with replacement, each with "
        "weight (1 / its class's count) ** --sampler-power (balanced)", choices=SAMPLERS))
    sampler_power: float = field(default=1.0, metadata=_opt(
        "exponent of --sampler balanced, in [0, 1]: 1 draws every class equally often, 0.5 each class in "
        "proportion to the square root of its count, 0 the training split's own mix"))
    # scoring, not training: a resume may switch it, and validation during training never uses it (8x its cost)
    tta: bool = field(default=False, metadata=_opt(
        "test-time augmentation: the test split's (and evaluate's) class probabilities averaged over the 8 flips "
        "and 90-degree rotations of each map", resume_safe=True))
    # early stopping and checkpoints
    patience: int = field(default=5, metadata=_opt("epochs without improvement before stopping", resume_safe=True))
    monitor: str = field(default="val_loss", metadata=_opt("metric for early stopping and best checkpoints", choices=tuple(MONITORS)))
    min_delta: float = field(default=0.0, metadata=_opt("smallest change that counts as an improvement"))
    save_top_k: int = field(default=3, metadata=_opt("best checkpoints kept besides 'last'", resume_safe=True))
    # runtime
    num_workers: int = field(default=0, metadata=_opt("DataLoader worker processes", resume_safe=True))
    accelerator: str = field(default="auto", metadata=_opt("where to train", choices=ACCELERATORS, resume_safe=True))
    devices: int = field(default=1, metadata=_opt("devices (processes) per node", resume_safe=True))
    num_nodes: int = field(default=1, metadata=_opt("nodes (Lightning DDP; plain side takes torchrun's)", resume_safe=True))
    strategy: str = field(default="auto", metadata=_opt("'ddp' for DistributedDataParallel", choices=STRATEGIES, resume_safe=True))
    precision: str = field(default="32", metadata=_opt("numeric precision", choices=PRECISIONS))
    channels_last: bool = field(default=False, metadata=_opt("NHWC memory format for model and batches", resume_safe=True))
    compile: bool = field(default=False, metadata=_opt("wrap the model in torch.compile", resume_safe=True))
    compile_mode: str = field(default="default", metadata=_opt(
        "torch.compile mode with --compile ('reduce-overhead' replays CUDA graphs)", choices=COMPILE_MODES,
        resume_safe=True))
    # one kernel for the whole update instead of a few per parameter group: on a GPU the step is launch-bound
    fused_optimizer: bool = field(default=False, metadata=_opt("Adam's fused implementation (torch.optim.Adam(fused=True))"))
    # the regime where a framework's per-step cost weighs most: no host-to-device copy left in the step
    data_on_device: bool = field(default=False, metadata=_opt(
        "move the splits to the device once and gather each batch there (same batches, same order)", resume_safe=True))
    deterministic: bool = field(default=False, metadata=_opt("torch.use_deterministic_algorithms", resume_safe=True))
    log_every_n_steps: int = field(default=50, metadata=_opt("steps between per-step loss points in TensorBoard", resume_safe=True))
    # the features of a full run, each of which can be switched off alone (the benchmarks price them one by one)
    early_stopping: bool = field(default=True, metadata=_opt("stop after --patience epochs without improvement"))
    checkpoints: bool = field(default=True, metadata=_opt(
        "best-k + last checkpoints (without them the final weights are tested)", resume_safe=True))
    tensorboard: bool = field(default=True, metadata=_opt(
        "TensorBoard event files: step loss, epoch metrics, learning rate", resume_safe=True))
    progress_bar: bool = field(default=True, metadata=_opt("a tqdm bar per epoch", resume_safe=True))
    barebones: bool = field(default=False, metadata=_opt(
        "all four above off, and Lightning's Trainer(barebones=True): no self.log either (speed runs)"))
    lightning_defaults: bool = field(default=False, metadata=_opt(
        "Lightning side only (the plain side refuses it): log as its docs show (self.log in every step, a bar redrawn every step) instead of "
        "doing the plain loop's work (epoch sums logged once, the bar every 10 steps)", resume_safe=True))
    plots: bool = field(default=True, metadata=_opt(
        "confusion-matrix and sample-prediction PNGs after the test (~1 s of matplotlib)", resume_safe=True))
    output_dir: str = field(default="runs/latest", metadata=_opt("folder for metrics, plots, logs and checkpoints", resume_safe=True))
    overwrite: bool = field(default=False, metadata=_opt("clear the earlier run's outputs in --output-dir first",
                                                         resume_safe=True))
    resume: str | None = field(default=None, metadata=_opt(
        "'last' or a checkpoint path to continue from; flags not given take the checkpoint's values", resume_safe=True))

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # first: NaN fails every range check, which would then be named
            if isinstance(getattr(self, f.name), float):
                _require(f.name, getattr(self, f.name), math.isfinite(getattr(self, f.name)), "must be finite")
        for name in ("image_size", "epochs", "batch_size", "base_channels", "devices", "num_nodes", "log_every_n_steps"):
            _require(name, getattr(self, name), getattr(self, name) >= 1, "must be >= 1")
        for name in ("samples_per_class", "patience", "save_top_k", "num_workers", "min_delta", "weight_decay",
                     "warmup_epochs"):
            _require(name, getattr(self, name), getattr(self, name) >= 0, "must be >= 0")
        _require("image_size", self.image_size, self.image_size >= 8, "must be >= 8 (three 2x poolings)")
        # every map is resized to image_size squared in memory: WM-811K's largest are ~300 px a side
        _require("image_size", self.image_size, self.image_size <= MAX_IMAGE_SIZE, f"must be <= {MAX_IMAGE_SIZE}")
        # DataLoader hands batch_size to itertools.islice, which raises a bare ValueError past sys.maxsize
        _require("batch_size", self.batch_size, self.batch_size <= 2**31, "must be <= 2**31")
        # an empty folder name would scatter the run's outputs over the current directory
        _require("output_dir", self.output_dir, self.output_dir.strip() != "", "must name a folder")
        # numpy, sklearn (RandomState) and DistributedSampler reject negative seeds, RandomState also >= 2**32
        _require("seed", self.seed, 0 <= self.seed < 2**32, "must be in [0, 2**32)")
        _require("lr", self.lr, self.lr > 0, "must be > 0")
        # the optimizer holds it as a float32 tensor
        _require("lr", self.lr, self.lr <= FLOAT32_MAX, f"must be <= {FLOAT32_MAX:.3g} (float32's largest)")
        _require("dropout", self.dropout, 0 <= self.dropout < 1, "must be in [0, 1)")
        _require("class_weight_power", self.class_weight_power, self.class_weight_power > 0, "must be > 0")
        _require("class_weight_power", self.class_weight_power, self.class_weights or self.class_weight_power == 1.0,
                 "needs --class-weights")
        _require("sampler_power", self.sampler_power, 0 <= self.sampler_power <= 1, "must be in [0, 1]")
        _require("sampler_power", self.sampler_power, self.sampler == "balanced" or self.sampler_power == 1.0,
                 "needs --sampler balanced")
        _require("label_smoothing", self.label_smoothing, 0 <= self.label_smoothing < 1, "must be in [0, 1)")
        _require("warmup_epochs", self.warmup_epochs, self.lr_schedule == "constant" or self.warmup_epochs < self.epochs,
                 f"must be < epochs={self.epochs} (the cosine schedule needs steps after the warm-up)")
        for name in ("val_fraction", "test_fraction"):
            _require(name, getattr(self, name), 0 < getattr(self, name) < 1, "must be in (0, 1)")
        _require("val_fraction", self.val_fraction, self.val_fraction + self.test_fraction < 1,
                 f"plus test_fraction={self.test_fraction} must leave training data (< 1)")
        for name, allowed in (("accelerator", ACCELERATORS), ("strategy", STRATEGIES),
                              ("precision", PRECISIONS), ("monitor", tuple(MONITORS)), ("lr_schedule", LR_SCHEDULES),
                              ("sampler", SAMPLERS),
                              ("compile_mode", COMPILE_MODES)):
            _require(name, getattr(self, name), getattr(self, name) in allowed, f"must be one of {allowed}")
        _require("compile_mode", self.compile_mode, self.compile or self.compile_mode == "default",
                 "needs --compile")
        # worker processes would each need the device tensors; the gather on the device is the whole loader
        _require("num_workers", self.num_workers, not (self.data_on_device and self.num_workers),
                 "must be 0 with --data-on-device")
        if self.data != "synthetic":
            require_path("data", self.data, "data file", "'synthetic' or a file's path")
            _require("data", self.data, Path(self.data).is_file(), "is neither 'synthetic' nor an existing file")
        else:
            _require("samples_per_class", self.samples_per_class, self.samples_per_class >= 1,
                     "must be >= 1 for synthetic data")
        if self.resume not in (None, "last"):
            require_path("resume", self.resume, "checkpoint file", "'last' or a checkpoint file's path")
            _require("resume", self.resume, Path(self.resume).is_file(), "is neither 'last' nor an existing file")
        _require("overwrite", self.overwrite, not (self.overwrite and self.resume),
                 f"clears the run that resume={self.resume!r} would continue; use one of them")

    def uses(self, feature: str) -> bool:
        """Whether the run has one of FEATURES: on unless switched off alone or by --barebones."""
        return not self.barebones and getattr(self, feature)

    @property
    def monitor_mode(self) -> str:
        """'min' for losses, 'max' for accuracies."""
        return MONITORS[self.monitor]

    @property
    def checkpoint_dir(self) -> Path:
        return Path(self.output_dir) / "checkpoints"

    def replace(self, **changes) -> TrainConfig:
        """A validated copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _require(name: str, value, ok: bool, why: str) -> None:
    if not ok:
        raise ConfigError(name, f"{name}={value!r} {why}")


def require_path(name: str, value: str, kind: str, give: str) -> None:
    """ConfigError unless the path flag `name` could name a file: not empty (`give` says what to), not a folder."""
    _require(name, value, value != "", f"is empty: give {give}")
    _require(name, value, not Path(value).is_dir(), f"is a folder, not a {kind}")


def experiment_changes(stored: dict, cfg: TrainConfig, facts: dict | None = None) -> list[str]:
    """The experiment-defining fields (not resume_safe) where a checkpoint's stored config differs from cfg.

    A field the checkpoint predates counts as its default, the value that run implicitly had. With `facts`
    (shared.data.experiment_facts) the world size is compared too, and the data by its content, not its path.
    """
    current = cfg.to_dict()
    # a schedule spans all epochs: with one, another --epochs would bend the learning-rate curve mid-run
    scheduled = current["lr_schedule"] != "constant"
    by_content = facts is not None and "data_sha256" in stored  # older checkpoints name their data by path only
    changed = [f"{f.name}={stored.get(f.name, f.default)!r} (now {current[f.name]!r})"
               for f in dataclasses.fields(TrainConfig)
               if (not f.metadata["resume_safe"] or (f.name == "epochs" and scheduled))
               and not (f.name == "data" and by_content) and stored.get(f.name, f.default) != current[f.name]]
    if by_content and stored["data_sha256"] != facts["data_sha256"]:
        changed.append(f"data={stored.get('data')!r} sha256 {_short(stored['data_sha256'])} "
                       f"(now {cfg.data!r} sha256 {_short(facts['data_sha256'])})")
    if facts is not None and stored.get("world_size", facts["world_size"]) != facts["world_size"]:
        # the per-step batch, the steps per epoch and so the schedule are the world size's
        changed.append(f"world_size={stored['world_size']} (now {facts['world_size']})")
    return changed


def _short(digest: str | None) -> str:
    return "-" if digest is None else digest[:12]


def check_same_experiment(path: str | Path, stored: dict, cfg: TrainConfig, facts: dict | None = None) -> None:
    """TrainingError listing the experiment fields a resume from `path` would silently change."""
    changed = experiment_changes(stored, cfg, facts)
    if changed:
        raise TrainingError(f"{path}: trained with a different configuration: {', '.join(changed)}; resume with "
                            f"the checkpoint's values, or start a new run in another --output-dir")


def check_epochs_left(path: str | Path, epochs_done: int, cfg: TrainConfig) -> None:
    """ConfigError (a bad --epochs) if the checkpoint at `path` has already run more epochs than cfg.epochs;
    TrainingError if it has run them all and the output folder holds the finished run's metrics.json (a resume
    would only test again and overwrite its record; one killed during the test still finishes it)."""
    if cfg.epochs < epochs_done:
        raise ConfigError("epochs", f"epochs={cfg.epochs} is fewer than the {epochs_done} epochs {path} has already "
                                    f"run; give --epochs {epochs_done} or more")
    if cfg.epochs == epochs_done and (Path(cfg.output_dir) / "metrics.json").is_file():
        raise TrainingError(f"nothing to resume: {path} has run all {epochs_done} epochs and "
                            f"{Path(cfg.output_dir) / 'metrics.json'} holds the finished run; give --epochs "
                            f"{epochs_done + 1} or more to train on, or score a checkpoint with evaluate")
