"""Cityscapes (fine annotations) in the official folder layout, 19 train classes.

Layout::

    root/leftImg8bit/{split}/{city}/{stem}_leftImg8bit.png
    root/gtFine/{split}/{city}/{stem}_gtFine_labelTrainIds.png   (train ids, 255 = ignore)
    root/gtFine/{split}/{city}/{stem}_gtFine_labelIds.png        (the 34 official ids)

``*_labelTrainIds.png`` files are made by cityscapesscripts' ``createTrainIdLabelImgs``; when
only ``*_labelIds.png`` exist the loader maps them to train ids itself with the official
label table.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..utils import IGNORE_INDEX
from .io import (
    DataError,
    PathLike,
    SegmentationDataset,
    Transform,
    check_label_values,
    check_pair,
    label_values,
    read_image,
    read_label,
    require_dir,
    sorted_glob,
)

# The official table (cityscapesscripts/helpers/labels.py) written out: label id -> train id
# for ids 0..33 (255 = not evaluated). "license plate" has id -1 and never appears in files.
BUILTIN_ID_TO_TRAIN_ID: dict[int, int] = {
    0: 255, 1: 255, 2: 255, 3: 255, 4: 255, 5: 255, 6: 255,
    7: 0, 8: 1, 9: 255, 10: 255, 11: 2, 12: 3, 13: 4, 14: 255, 15: 255, 16: 255,
    17: 5, 18: 255, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12, 26: 13,
    27: 14, 28: 15, 29: 255, 30: 255, 31: 16, 32: 17, 33: 18,
}  # fmt: skip

# The 19 train classes with their official colours, in train-id order.
BUILTIN_CLASSES: list[tuple[str, tuple[int, int, int]]] = [
    ("road", (128, 64, 128)),
    ("sidewalk", (244, 35, 232)),
    ("building", (70, 70, 70)),
    ("wall", (102, 102, 156)),
    ("fence", (190, 153, 153)),
    ("pole", (153, 153, 153)),
    ("traffic light", (250, 170, 30)),
    ("traffic sign", (220, 220, 0)),
    ("vegetation", (107, 142, 35)),
    ("terrain", (152, 251, 152)),
    ("sky", (70, 130, 180)),
    ("person", (220, 20, 60)),
    ("rider", (255, 0, 0)),
    ("car", (0, 0, 142)),
    ("truck", (0, 0, 70)),
    ("bus", (0, 60, 100)),
    ("train", (0, 80, 100)),
    ("motorcycle", (0, 0, 230)),
    ("bicycle", (119, 11, 32)),
]

LABEL_TYPES = ("trainIds", "labelIds", "auto")
SPLITS = ("train", "val", "test", "trainval")


def builtin_tables() -> tuple[np.ndarray, list[str], list[tuple[int, int, int]]]:
    """The built-in label table.

    Returns:
        ``(lut, classes, palette)``: ``lut`` a uint8 array of 256 entries mapping a label id to
        its train id (255 for ids that are not evaluated and for values that are not ids), the
        19 class names and their colours in train-id order.
    """
    lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    for label_id, train_id in BUILTIN_ID_TO_TRAIN_ID.items():
        lut[label_id] = train_id
    return lut, [n for n, _ in BUILTIN_CLASSES], [c for _, c in BUILTIN_CLASSES]


def official_tables() -> tuple[np.ndarray, list[str], list[tuple[int, int, int]]] | None:
    """The same tables built from ``cityscapesscripts.helpers.labels``; None if not installed."""
    try:
        from cityscapesscripts.helpers.labels import labels
    except ImportError:
        return None
    lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    names: dict[int, tuple[str, tuple[int, int, int]]] = {}
    for entry in labels:
        if entry.id < 0:
            continue
        train_id = entry.trainId if 0 <= entry.trainId < IGNORE_INDEX else IGNORE_INDEX
        lut[entry.id] = train_id
        if train_id != IGNORE_INDEX:
            names[train_id] = (entry.name, tuple(entry.color))
    order = sorted(names)
    return lut, [names[t][0] for t in order], [names[t][1] for t in order]


def label_tables() -> tuple[np.ndarray, list[str], list[tuple[int, int, int]]]:
    """The official tables when cityscapesscripts is importable, else the built-in copy."""
    return official_tables() or builtin_tables()


# Ids that may appear in a *_labelIds.png file (0..33).
NUM_LABEL_IDS = len(BUILTIN_ID_TO_TRAIN_ID)


class Cityscapes(SegmentationDataset):
    """Cityscapes fine annotations, 19 classes, 255 = ignore.

    Args:
        root: the folder holding ``leftImg8bit/`` and ``gtFine/``.
        split: "train", "val", "test" or "trainval" (train + val).
        transform: ``transform(image, label, generator)``, see :class:`SegmentationDataset`.
        label_type: "trainIds" reads ``*_gtFine_labelTrainIds.png``; "labelIds" reads
            ``*_gtFine_labelIds.png`` and maps the 34 ids to train ids; "auto" takes the
            trainIds file of a frame when it exists, else its labelIds file.

    ``load(i)`` gives (image uint8 3×H×W, label int64 H×W with values in [0, 19) ∪ {255}).
    ``name(i)`` is the frame id, e.g. ``frankfurt_000000_000294``.
    """

    def __init__(
        self,
        root: PathLike,
        split: str = "train",
        transform: Transform | None = None,
        label_type: str = "auto",
        strict: bool = True,
    ) -> None:
        if split not in SPLITS:
            raise DataError(f"unknown Cityscapes split {split!r}; use one of {SPLITS}")
        if label_type not in LABEL_TYPES:
            raise DataError(f"unknown label_type {label_type!r}; use one of {LABEL_TYPES}")
        self.strict, self.problems = strict, []
        self.root = require_dir(root, "Cityscapes root")
        self.split = split
        self.transform = transform
        self.label_type = label_type
        lut, self.classes, self.palette = label_tables()
        self.ignore_index = IGNORE_INDEX
        self._lut = torch.from_numpy(lut)
        # (image path, label path, label file holds train ids)
        self.samples: list[tuple[Path, Path, bool]] = []
        for part in ("train", "val") if split == "trainval" else (split,):
            self.samples += self._scan(part)

    def _scan(self, split: str) -> list[tuple[Path, Path, bool]]:
        image_dir = require_dir(self.root / "leftImg8bit" / split, "Cityscapes image")
        label_dir = require_dir(self.root / "gtFine" / split, "Cityscapes label")
        images = sorted_glob(image_dir, "*/*_leftImg8bit.png")
        if not images:
            raise DataError(f"{image_dir}: no */*_leftImg8bit.png images found")
        samples = []
        for image_path in images:
            stem = image_path.name[: -len("_leftImg8bit.png")]
            base = label_dir / image_path.parent.name / stem
            train_ids = Path(f"{base}_gtFine_labelTrainIds.png")
            label_ids = Path(f"{base}_gtFine_labelIds.png")
            if self.label_type == "trainIds" or (
                self.label_type == "auto" and train_ids.is_file()
            ):
                label_path, is_train_ids = train_ids, True
            else:
                label_path, is_train_ids = label_ids, False
            if not label_path.is_file():
                wanted = {"trainIds": train_ids, "labelIds": label_ids}.get(self.label_type)
                missing = str(wanted) if wanted else f"{train_ids} or {label_ids}"
                self._problem(f"{image_path}: image without label; missing {missing}")
                continue
            samples.append((image_path, label_path, is_train_ids))
        return samples

    def __len__(self) -> int:
        return len(self.samples)

    def name(self, index: int) -> str:
        return self.samples[self._check_index(index)][0].name[: -len("_leftImg8bit.png")]

    def load(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image_path, label_path, is_train_ids = self.samples[self._check_index(index)]
        image = read_image(image_path)
        label = read_label(label_path)
        check_pair(image, label, image_path, label_path)
        if not is_train_ids:
            values = label_values(label)
            bad = values[(values < 0) | (values >= NUM_LABEL_IDS)]
            if bad.numel():
                raise DataError(
                    f"{label_path}: values {bad[:10].tolist()} are not Cityscapes label ids "
                    f"(0..{NUM_LABEL_IDS - 1})"
                )
            label = self._lut[label.long()]
        check_label_values(label, self.num_classes, self.ignore_index, label_path)
        return image, label.long()
