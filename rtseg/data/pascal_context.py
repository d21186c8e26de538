"""PASCAL-Context, the 59-class version (PASCAL VOC 2010 images with whole-scene labels).

Layout (``root`` is ``VOCdevkit/VOC2010/``, ``VOCdevkit/`` or the folder holding it)::

    VOCdevkit/VOC2010/JPEGImages/{id}.jpg                          RGB images (all of VOC2010)
    VOCdevkit/VOC2010/SegmentationClassContext/{id}.png           single-channel labels
    VOCdevkit/VOC2010/ImageSets/SegmentationContext/{train,val}.txt   one id a line

The label PNGs are those written by the usual converter of the Detail API's ``trainval_merged``
annotations (e.g. mmsegmentation's ``pascal_context.py`` dataset converter): value 0 is
background (everything outside the 59 most frequent classes), 1..59 the 59 classes in the
alphabetical order of their PASCAL-Context ids. 4 998 train and 5 105 val images.

Convention here (the 59-class benchmark, "PASCAL-Context 59"): background is ignored, 0 → 255,
and class c → c - 1. The other benchmark, "PASCAL-Context 60", scores background as a class
(60 classes, file values used as they are); rtseg does not offer it, and published numbers of
the two are not comparable.

Class names: the 59 PASCAL-Context names. Palette: mmsegmentation's for the 59-class set
(entries 1..59 of its ADE20K palette).
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..utils import IGNORE_INDEX
from .ade20k import ADE20K_PALETTE
from .io import (
    DataError,
    FilePairDataset,
    PathLike,
    Transform,
    reduce_zero_label,
    require_dir,
)

PASCAL_CONTEXT_CLASSES = [
    "aeroplane", "bag", "bed", "bedclothes", "bench", "bicycle", "bird", "boat", "book",
    "bottle", "building", "bus", "cabinet", "car", "cat", "ceiling", "chair", "cloth",
    "computer", "cow", "cup", "curtain", "dog", "door", "fence", "floor", "flower", "food",
    "grass", "ground", "horse", "keyboard", "light", "motorbike", "mountain", "mouse", "person",
    "plate", "platform", "pottedplant", "road", "rock", "sheep", "shelves", "sidewalk", "sign",
    "sky", "snow", "sofa", "table", "track", "train", "tree", "truck", "tvmonitor", "wall",
    "water", "window", "wood",
]  # fmt: skip
PASCAL_CONTEXT_PALETTE = ADE20K_PALETTE[1:60]

SPLITS = ("train", "val")
VOC2010 = "VOCdevkit/VOC2010"
LABELS = "SegmentationClassContext"
LISTS = "ImageSets/SegmentationContext"


def is_pascal_context(root: Path) -> bool:
    """Whether ``root`` (or its ``VOCdevkit/VOC2010`` / ``VOC2010``) holds the layout."""
    return any((root / inner / LABELS).is_dir() for inner in (VOC2010, "VOC2010", "."))


class PascalContext(FilePairDataset):
    """PASCAL-Context, 59 classes, background (file value 0) → 255.

    Args:
        root: ``VOCdevkit/VOC2010/``, ``VOCdevkit/`` or the folder holding ``VOCdevkit/``.
        split: "train" (4 998 images) or "val" (5 105), read from
            ``ImageSets/SegmentationContext/{split}.txt``.
        transform: ``transform(image, label, generator)``, see :class:`SegmentationDataset`.
        strict: False collects problems (a listed id without its image or label) in
            ``problems`` instead of raising.

    ``load(i)`` gives (image uint8 3×H×W, label int64 H×W with values in [0, 59) ∪ {255}).
    ``name(i)`` is the image id, e.g. ``2008_000002``.
    """

    classes = PASCAL_CONTEXT_CLASSES
    palette = PASCAL_CONTEXT_PALETTE
    ignore_index = IGNORE_INDEX

    def __init__(
        self, root: PathLike, split: str = "train", transform: Transform | None = None,
        strict: bool = True,
    ) -> None:
        self._start(root, split, SPLITS, "PASCAL-Context", transform, strict, VOC2010, "VOC2010")
        self.samples = self._read_list(self.root / LISTS / f"{split}.txt")

    def _read_list(self, list_path: Path) -> list[tuple[Path, Path]]:
        image_dir = require_dir(self.root / "JPEGImages", "PASCAL-Context image")
        label_dir = require_dir(self.root / LABELS, "PASCAL-Context label")
        if not list_path.is_file():
            raise DataError(f"{list_path}: missing split list (one image id a line)")
        try:
            ids = list_path.read_text(encoding="utf-8").split()
        except (OSError, UnicodeDecodeError) as err:
            raise DataError(f"{list_path}: unreadable split list ({err})") from None
        if not ids:
            raise DataError(f"{list_path}: the split list is empty")
        samples = []
        for stem in dict.fromkeys(ids):
            image, label = image_dir / f"{stem}.jpg", label_dir / f"{stem}.png"
            has_image, has_label = image.is_file(), label.is_file()
            if has_image and has_label:
                samples.append((image, label))
            elif has_image:
                self._problem(f"{image}: image without label; missing {label} "
                              f"(listed in {list_path})")
            elif has_label:
                self._problem(f"{label}: label without image; missing {image} "
                              f"(listed in {list_path})")
            else:
                self._problem(f"{list_path}: {stem!r} is listed but neither {image} nor "
                              f"{label} exists")
        return samples

    def map_label(self, label: torch.Tensor) -> torch.Tensor:
        return reduce_zero_label(label, self.num_classes, self.ignore_index)
