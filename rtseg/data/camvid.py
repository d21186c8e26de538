"""CamVid in the SegNet 11-class layout (480×360 frames).

Layout::

    root/{split}/{name}.png         RGB frames           (split: train, val, test)
    root/{split}annot/{name}.png    single-channel labels, values 0..10 and 11 = void

Void (11) is mapped to 255 so that every rtseg data set ignores the same value.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..utils import IGNORE_INDEX
from .io import FilePairDataset, PathLike, Transform, require_dir

CAMVID_CLASSES = [
    "Sky", "Building", "Pole", "Road", "Sidewalk", "Tree", "SignSymbol", "Fence", "Car",
    "Pedestrian", "Bicyclist",
]  # fmt: skip
# The palette of the SegNet tutorial's CamVid release, in class order.
CAMVID_PALETTE = [
    (128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222),
    (128, 128, 0), (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192),
]  # fmt: skip
VOID = 11
SPLITS = ("train", "val", "test", "trainval")


class CamVid(FilePairDataset):
    """CamVid, 11 classes, void → 255.

    Args:
        root: the folder holding ``train/``, ``trainannot/``, ``val/``, ... .
        split: "train" (367), "val" (101), "test" (233) or "trainval" (train + val, 468).
        transform: ``transform(image, label, generator)``, see :class:`SegmentationDataset`.

    ``load(i)`` gives (image uint8 3×H×W, label int64 H×W with values in [0, 11) ∪ {255}).
    ``name(i)`` is the file stem, e.g. ``0001TP_006690``.
    """

    classes = CAMVID_CLASSES
    palette = CAMVID_PALETTE
    ignore_index = IGNORE_INDEX

    def __init__(
        self, root: PathLike, split: str = "train", transform: Transform | None = None,
        strict: bool = True,
    ) -> None:
        self._start(root, split, SPLITS, "CamVid", transform, strict)
        self.samples: list[tuple[Path, Path]] = []
        for part in ("train", "val") if split == "trainval" else (split,):
            self.samples += self._pair_by_name(
                require_dir(self.root / part, "CamVid image"),
                require_dir(self.root / f"{part}annot", "CamVid label"), ".png", ".png")

    def map_label(self, label: torch.Tensor) -> torch.Tensor:
        return label.masked_fill(label == VOID, IGNORE_INDEX)
