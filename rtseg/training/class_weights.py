"""The loss's class weights of a run: given in the config, or counted from the training labels.

``class_weights`` in the config is K numbers (used as given) or the name of a frequency
weighting (:func:`rtseg.losses.class_weights`), computed here from the raw labels of the
training split (no augmentation) once at the start of a run; a resumed run recounts the same
labels and gets the same weights.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch

from ..data.io import SegmentationDataset
from ..errors import ConfigError
from ..losses import class_weights
from .config import TrainConfig


def label_counts(dataset: SegmentationDataset) -> tuple[torch.Tensor, torch.Tensor]:
    """(K labelled pixels per class, K total pixels of the images that contain each class)."""
    k = dataset.num_classes
    pixels = torch.zeros(k, dtype=torch.float64)
    image_pixels = torch.zeros(k, dtype=torch.float64)
    for i in range(len(dataset)):
        label = dataset.load(i)[1]
        valid = label[label != dataset.ignore_index]
        counts = torch.bincount(valid.flatten(), minlength=k).double()
        pixels += counts
        image_pixels += (counts > 0).double() * label.numel()
    return pixels, image_pixels


def run_class_weights(cfg: TrainConfig, dataset: SegmentationDataset) -> torch.Tensor | None:
    """K float32 weights for ``cfg.class_weights`` on ``dataset`` (its training split), or None."""
    spec = cfg.class_weights
    if spec is None:
        return None
    if isinstance(spec, str):
        return class_weights(spec, *label_counts(dataset))
    if len(spec) != dataset.num_classes:
        raise ConfigError(f"class_weights has {len(spec)} values but {cfg.dataset!r} has "
                          f"{dataset.num_classes} classes; give one weight per class")
    return torch.tensor(spec, dtype=torch.float32)


def record_class_weights(run: Path, classes: Sequence[str], weights: torch.Tensor) -> str:
    """Write ``run/class_weights.json`` (weight by class name); return a one-line summary."""
    named = dict(zip(classes, weights.tolist(), strict=True))
    (run / "class_weights.json").write_text(json.dumps(named, indent=1) + "\n")
    return "class weights: " + ", ".join(f"{n} {w:.2f}" for n, w in named.items())
