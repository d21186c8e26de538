"""Training configuration: one flat dataclass, read from YAML, every field overridable.

A config file holds a subset of :class:`TrainConfig`'s fields; the command line overrides any
of them as ``key=value`` (the value is parsed as YAML: ``iters=2000``, ``crop_size=[256,512]``,
``amp=true``). Unknown keys are an error that lists the valid ones.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, InputNotFoundError


@dataclass
class TrainConfig:
    # what to train
    model: str = "fpn_r18_bilinear"
    model_kwargs: dict[str, Any] = field(default_factory=dict)  # create_model(**model_kwargs)
    dataset: str = "synthetic"  # a name of rtseg.data.DATASETS
    data_root: str | None = None
    # The data set class's options (rtseg.data.dataset_options), e.g. for synthetic
    # {size: [128, 256], num_images: {train: 400, val: 40, test: 40}}.
    dataset_kwargs: dict[str, Any] = field(default_factory=dict)
    train_split: str = "train"
    val_split: str = "val"  # model selection; never the test split
    pretrained_backbone: str | None = None
    # Start from another run's weights: every tensor of init_from's model whose name and shape
    # match is copied (the rest keeps its initialisation); both lists are printed and logged.
    init_from: str | None = None
    init_parts: str | None = None  # comma-separated top-level parts to copy (None: all)
    # Comma-separated top-level parts of the model to freeze (e.g. "backbone"): no gradient,
    # BN statistics frozen, forward under no_grad.
    freeze: str | None = None
    # augmentation
    crop_size: tuple[int, int] = (128, 256)
    scale_range: tuple[float, float] = (0.5, 2.0)
    flip: bool = True
    color_jitter: float = 0.25
    # optimisation
    iters: int = 300
    batch_size: int = 8  # global: divided by the number of DDP processes
    lr: float = 0.01
    head_lr_mult: float = 1.0  # learning-rate factor of everything but the backbone
    backbone_lr_mult: float = 1.0  # learning-rate factor of the backbone
    momentum: float = 0.9
    weight_decay: float = 5e-4
    poly_power: float = 0.9
    warmup_iters: int = 0
    warmup_ratio: float = 0.1  # lr factor at iteration 0 of the linear warm-up
    loss: str = "ohem"  # ce | ohem
    ohem_thresh: float = 0.7
    # Pixels kept at least, per image: the loss on a process's batch of b images keeps
    # b·ohem_min_kept (GAIN: 100000 per image; FANet: crop_h·crop_w/16).
    ohem_min_kept: int = 2048
    # Per-class loss weights: K numbers, or computed from the training labels at the start of a
    # run: "inverse_log_frequency" (ENet's 1/ln(1.02 + p)) or "median_frequency" (SegNet's).
    class_weights: str | list[float] | None = None
    # + lovasz_weight · Lovász-softmax (Berman et al. 2018) on the main logits: a surrogate of
    # 1 − IoU, which lifts the recall of thin, rare classes that a pixel loss under-predicts.
    lovasz_weight: float = 0.0
    aux_weights: list[float] | None = None  # None: the model's (paper) weights
    amp: bool = False  # mixed precision: bf16 on CPU, fp16 on CUDA
    # NHWC weights and inputs: oneDNN's faster CPU convolutions for EfficientNet-Lite's depthwise
    # layers (python -m tools.time_train_step; docs/benchmarks.md); the same arithmetic.
    channels_last: bool = False
    sync_bn: bool = False
    # evaluation during training
    eval_interval: int = 100
    eval_mode: str = "whole"  # whole | slide
    eval_crop: tuple[int, int] | None = None
    eval_scale: float = 1.0  # validation sees each image resized by this; scored at label size
    # The protocol's input scale (GUN's "Subsampling 2" is 0.5): the network sees every image
    # scaled by it, in training (random scales drawn from scale_range × input_scale, crops of
    # crop_size network pixels) and in validation (eval_scale × input_scale), and the logits
    # are resized to the label. eval_scale stays a test-time factor on top of it.
    input_scale: float = 1.0
    # bookkeeping
    seed: int = 0
    workers: int = 2
    device: str = "auto"  # auto | cpu | cuda
    log_interval: int = 10
    tensorboard: bool = False  # also TensorBoard scalars in <run>/tb (needs tensorboard)
    ckpt_interval: int = 100
    out_dir: str = "runs"
    run_name: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # free notes (the recipe's source)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def train_scale_range(self) -> tuple[float, float]:
        """The training transform's random scale range: ``scale_range × input_scale``."""
        return (self.scale_range[0] * self.input_scale, self.scale_range[1] * self.input_scale)

    @property
    def val_scale(self) -> float:
        """The scale validation resizes each image by: ``eval_scale × input_scale``."""
        return self.eval_scale * self.input_scale


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


# Fields that must be >= 1, >= 0, or a finite number > 0.
_POSITIVE = ("iters", "batch_size", "log_interval", "eval_interval", "ckpt_interval",
             "ohem_min_kept")
_NON_NEGATIVE = ("warmup_iters", "workers", "seed", "weight_decay", "momentum", "color_jitter",
                 "lovasz_weight")
_FINITE_POSITIVE = ("lr", "head_lr_mult", "backbone_lr_mult", "poly_power", "warmup_ratio",
                    "eval_scale", "input_scale")
CLASS_WEIGHTINGS = ("inverse_log_frequency", "median_frequency")
_CHOICES = {"loss": ("ce", "ohem"), "eval_mode": ("whole", "slide"),
            "device": ("auto", "cpu", "cuda")}


def _coerce(name: str, value: Any) -> Any:
    """Turn YAML lists into the tuples the dataclass declares; check types and ranges."""
    default = FIELDS[name].default
    if name == "class_weights":
        return _class_weights(value)
    if isinstance(default, tuple) or (name == "eval_crop" and value is not None):
        if not isinstance(value, (list, tuple)) or len(value) != 2:
            raise ConfigError(f"{name} must be a pair such as [256, 512], got {value!r}")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0
                   for v in value):
            raise ConfigError(f"{name} must hold two positive numbers, got {value!r}")
        return tuple(value)
    if isinstance(default, bool) and not isinstance(value, bool):
        raise ConfigError(f"{name} must be true or false, got {value!r}")
    is_int = isinstance(default, int) and not isinstance(default, bool)
    if is_int and (not isinstance(value, int) or isinstance(value, bool)):
        raise ConfigError(f"{name} must be an integer, got {value!r}")
    if isinstance(default, float) and (not isinstance(value, (int, float))
                                       or isinstance(value, bool)):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    if name in _POSITIVE and value < 1:
        raise ConfigError(f"{name} must be >= 1, got {value!r}")
    if name in _NON_NEGATIVE and not value >= 0:
        raise ConfigError(f"{name} must be >= 0, got {value!r}")
    if name in _FINITE_POSITIVE and not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{name} must be a finite number > 0, got {value!r}")
    if name in _CHOICES and value not in _CHOICES[name]:
        raise ConfigError(f"{name} must be one of {', '.join(_CHOICES[name])}, got {value!r}")
    if default is None and name not in ("aux_weights", "eval_crop") and value is not None \
            and not isinstance(value, str):
        raise ConfigError(f"{name} must be a string, got {value!r}")
    if name == "model_kwargs" and not isinstance(value, dict):
        raise ConfigError(f"model_kwargs must be a mapping such as {{mean: false}}, got {value!r}")
    if name == "dataset_kwargs" and not isinstance(value, dict):
        raise ConfigError("dataset_kwargs must be a mapping such as {size: [128, 256]}, got "
                          f"{value!r}")
    return value


def _class_weights(value: Any) -> str | list[float] | None:
    if value is None or value in CLASS_WEIGHTINGS:
        return value
    if isinstance(value, (list, tuple)) and value and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            and v > 0 for v in value):
        return [float(v) for v in value]
    raise ConfigError(f"class_weights must be {' or '.join(CLASS_WEIGHTINGS)} or a list of "
                      f"positive numbers, one per class; got {value!r}")


# Fields of configs and checkpoints written before dataset_kwargs (read for one release).
_LEGACY_SYNTHETIC = ("synthetic_size", "synthetic_train_images", "synthetic_val_images")


def upgrade_values(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with the pre-``dataset_kwargs`` synthetic fields moved into it.

    ``synthetic_size`` becomes ``size``, ``synthetic_train_images`` the train split's
    ``num_images`` and ``synthetic_val_images`` the val and test splits' (as they were read);
    the data seed is the run's ``seed``, as it was.
    """
    if not any(k in values for k in _LEGACY_SYNTHETIC):
        return values
    out = {k: v for k, v in values.items() if k not in _LEGACY_SYNTHETIC}
    if values.get("dataset", "synthetic") != "synthetic":
        return out
    kwargs = dict(out.get("dataset_kwargs") or {})
    if "synthetic_size" in values:
        kwargs["size"] = list(values["synthetic_size"])
    counts = dict(kwargs.get("num_images") or {})
    if "synthetic_train_images" in values:
        counts["train"] = values["synthetic_train_images"]
    if "synthetic_val_images" in values:
        counts["val"] = counts["test"] = values["synthetic_val_images"]
    kwargs.update(num_images=counts, seed=values.get("seed", 0))
    out["dataset_kwargs"] = kwargs
    return out


def make_config(values: dict[str, Any], source: str = "config") -> TrainConfig:
    """A checked :class:`TrainConfig` from plain values (YAML lists allowed for pairs).

    Besides each field's type and range, the model name, its options and the data set name are
    checked here, so that nothing (no run folder) is created for an invalid configuration.
    """
    from .. import registry
    from ..data import DATASETS, dataset_options

    values = upgrade_values(values)
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
        raise ConfigError(f"{source}: unknown field(s) {', '.join(unknown)}; valid fields: "
                          + ", ".join(sorted(FIELDS)))
    cfg = TrainConfig(**{k: _coerce(k, v) for k, v in values.items()})
    options = registry.model_options(cfg.model)  # raises for an unknown model
    bad = sorted(set(cfg.model_kwargs) - set(options))
    if bad:
        raise ConfigError(f"{source}: model {cfg.model!r} has no option {', '.join(bad)}; "
                          f"its options: {', '.join(options) or 'none'}")
    if cfg.dataset not in DATASETS:
        raise ConfigError(f"{source}: unknown dataset {cfg.dataset!r}; available: "
                          + ", ".join(sorted(DATASETS)))
    if DATASETS[cfg.dataset].needs_root and not cfg.data_root:
        raise ConfigError(f"{source}: dataset {cfg.dataset!r} needs data_root=PATH")
    options = dataset_options(cfg.dataset)
    bad = sorted(set(cfg.dataset_kwargs) - set(options))
    if bad:
        raise ConfigError(f"{source}: dataset {cfg.dataset!r} has no option {', '.join(bad)}; "
                          f"its options: {', '.join(options) or 'none'}")
    if cfg.eval_mode == "slide" and cfg.eval_crop is None:
        raise ConfigError(f"{source}: eval_mode=slide needs eval_crop=[h,w]")
    return cfg


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["iters=100", "crop_size=[64,64]"]`` → ``{"iters": 100, "crop_size": [64, 64]}``."""
    import yaml

    out = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not key=value")
        key, raw = item.split("=", 1)
        try:
            out[key.strip()] = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise ConfigError(f"override {item!r}: the value is not valid YAML") from None
    return out


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> TrainConfig:
    """Read a YAML config (or start from the defaults) and apply ``key=value`` overrides."""
    import yaml

    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise InputNotFoundError(f"{path}: config file not found")
        try:
            loaded = yaml.safe_load(path.read_text())
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML ({e})") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping of config fields")
        values.update(loaded or {})
    values.update(parse_overrides(overrides or []))
    return make_config(values, str(path) if path else "command line")
