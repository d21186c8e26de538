"""Training configuration: one flat dataclass, read from YAML, every field overridable.

A config file holds a subset of :class:`TrainConfig`'s fields; the command line overrides any
of them as ``key=value`` (the value is parsed as YAML: ``iters=2000``, ``crop_size=[256,512]``,
``amp=true``). Unknown keys are an error that lists the valid ones.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class TrainConfig:
    # what to train
    model: str = "fpn_r18_bilinear"
    dataset: str = "synthetic"  # synthetic | camvid | cityscapes | folder
    data_root: str | None = None
    train_split: str = "train"
    val_split: str = "val"  # model selection; never the test split
    pretrained_backbone: str | None = None
    # synthetic data only
    synthetic_size: tuple[int, int] = (128, 256)
    synthetic_train_images: int = 400
    synthetic_val_images: int = 40
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
    aux_weights: list[float] | None = None  # None: the model's (paper) weights
    amp: bool = False  # mixed precision: bf16 on CPU, fp16 on CUDA
    sync_bn: bool = False
    # evaluation during training
    eval_interval: int = 100
    eval_mode: str = "whole"  # whole | slide
    eval_crop: tuple[int, int] | None = None
    # bookkeeping
    seed: int = 0
    workers: int = 2
    device: str = "auto"  # auto | cpu | cuda
    log_interval: int = 10
    ckpt_interval: int = 100
    out_dir: str = "runs"
    run_name: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # free notes (the recipe's source)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def _coerce(name: str, value: Any) -> Any:
    """Turn YAML lists into the tuples the dataclass declares; check simple types."""
    default = FIELDS[name].default
    if isinstance(default, tuple) or (name == "eval_crop" and value is not None):
        if not isinstance(value, (list, tuple)) or len(value) != 2:
            raise ValueError(f"{name} must be a pair, got {value!r}")
        return tuple(value)
    if isinstance(default, bool) and not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {value!r}")
    is_int = isinstance(default, int) and not isinstance(default, bool)
    if is_int and (not isinstance(value, int) or isinstance(value, bool)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if isinstance(default, float) and not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    return value


def make_config(values: dict[str, Any], source: str = "config") -> TrainConfig:
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
        raise ValueError(f"{source}: unknown field(s) {', '.join(unknown)}; valid fields: "
                         + ", ".join(sorted(FIELDS)))
    return TrainConfig(**{k: _coerce(k, v) for k, v in values.items()})


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["iters=100", "crop_size=[64,64]"]`` → ``{"iters": 100, "crop_size": [64, 64]}``."""
    import yaml

    out = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"override {item!r} is not key=value")
        key, raw = item.split("=", 1)
        out[key.strip()] = yaml.safe_load(raw)
    return out


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> TrainConfig:
    """Read a YAML config (or start from the defaults) and apply ``key=value`` overrides."""
    import yaml

    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: config file not found")
        try:
            loaded = yaml.safe_load(path.read_text())
        except yaml.YAMLError as e:
            raise ValueError(f"{path}: not valid YAML ({e})") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ValueError(f"{path}: expected a mapping of config fields")
        values.update(loaded or {})
    values.update(parse_overrides(overrides or []))
    return make_config(values, str(path) if path else "command line")
