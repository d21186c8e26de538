"""Data sets, checked file readers and joint image/label transforms.

Every data set follows the contract of :class:`~rtseg.data.io.SegmentationDataset`:
``classes``, ``palette``, ``num_classes``, ``ignore_index``, ``name(i)``, ``load(i)`` (raw,
checked: image uint8 3×H×W, label int64 H×W) and ``ds[i]`` / ``ds[(i, seed)]`` (transformed).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import UnknownNameError
from .ade20k import ADE20K, is_ade20k
from .camvid import CamVid
from .cityscapes import Cityscapes
from .coco_stuff import COCOStuff, is_coco_stuff
from .folder import FolderDataset, read_classes
from .io import (
    DataError,
    FilePairDataset,
    SegmentationDataset,
    Transform,
    check_label_values,
    check_pair,
    read_image,
    read_label,
)
from .pascal_context import PascalContext, is_pascal_context
from .synthetic import Synthetic
from .transforms import eval_transforms, train_transforms

DATASETS: dict[str, type[SegmentationDataset]] = {
    "cityscapes": Cityscapes,
    "camvid": CamVid,
    "ade20k": ADE20K,
    "pascal_context": PascalContext,
    "coco_stuff": COCOStuff,
    "folder": FolderDataset,
    "synthetic": Synthetic,
}


def detect_dataset(root: str | Path) -> str:
    """The name of the data set laid out in ``root``.

    Rules, in this order (the first match wins):

    * cityscapes: ``leftImg8bit/``;
    * camvid: ``trainannot/``;
    * ade20k: ``annotations/`` and ``images/training|validation/``, in ``root`` or in its
      ``ADEChallengeData2016/``;
    * coco_stuff: ``annotations/`` and ``images/train2017|val2017/``;
    * pascal_context: ``SegmentationClassContext/`` in ``root``, ``root/VOC2010`` or
      ``root/VOCdevkit/VOC2010``;
    * folder: ``images/`` or ``train/images/`` (checked last: ADE20K and COCO-Stuff have an
      ``images/`` folder too).

    Raises:
        DataError: ``root`` is not a folder, or none of the layouts is recognised.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: data folder not found")
    if (root / "leftImg8bit").is_dir():
        return "cityscapes"
    if (root / "trainannot").is_dir():
        return "camvid"
    if is_ade20k(root):
        return "ade20k"
    if is_coco_stuff(root):
        return "coco_stuff"
    if is_pascal_context(root):
        return "pascal_context"
    if (root / "images").is_dir() or (root / "train" / "images").is_dir():
        return "folder"
    raise DataError(f"{root}: not a Cityscapes (leftImg8bit/), CamVid (train/, trainannot/), "
                    "ADE20K (images/training/, annotations/), COCO-Stuff (images/train2017/, "
                    "annotations/), PASCAL-Context (VOC2010/SegmentationClassContext/) or "
                    "folder (images/, masks/) layout")


def build_dataset(
    name: str,
    root: str | Path | None = None,
    split: str | None = "train",
    transform: Transform | None = None,
    **kwargs: Any,
) -> SegmentationDataset:
    """Build data set ``name`` (a key of ``DATASETS``).

    Args:
        name: "cityscapes", "camvid", "ade20k", "pascal_context", "coco_stuff", "folder" or
            "synthetic".
        root: the data set folder; not used by "synthetic" (made in memory).
        split: e.g. "train", "val", "test" ("trainval" for Cityscapes/CamVid; None for a
            folder data set without split sub-folders).
        transform: ``transform(image, label, generator)`` applied by ``ds[i]``.
        **kwargs: passed on to the class (e.g. ``label_type`` for Cityscapes, ``size`` and
            ``num_images`` for synthetic, ``images``/``masks``/``classes_file`` for folder).

    Raises:
        UnknownNameError: unknown name (a KeyError).
        DataError: ``root`` is missing (None or not a folder) for a file-based data set.
    """
    if name not in DATASETS:
        raise UnknownNameError(
            f"unknown dataset {name!r}; available: {', '.join(sorted(DATASETS))}")
    cls = DATASETS[name]
    if not cls.needs_root:
        return cls(split="train" if split is None else split, transform=transform, **kwargs)
    if root is None:
        raise DataError(f"dataset {name!r} needs a root folder (root=None given)")
    if not Path(root).is_dir():
        raise DataError(f"{root}: {name} root folder does not exist or is not a folder")
    return cls(root, split, transform=transform, **kwargs)


def dataset_options(name: str) -> list[str]:
    """The keyword options of data set ``name`` (what ``dataset_kwargs`` may hold)."""
    params = inspect.signature(DATASETS[name].__init__).parameters
    return [p for p in params if p not in ("self", "root", "split", "transform")]


def from_config(cfg: Any, split: str, train: bool = False) -> SegmentationDataset:
    """Split ``split`` of the data set a training config describes.

    ``cfg`` is a :class:`~rtseg.training.config.TrainConfig` or its dict (a checkpoint's
    ``config``); its ``dataset``, ``data_root`` and ``dataset_kwargs`` choose the data, and with
    ``train`` its ``crop_size``, ``scale_range`` × ``input_scale``, ``flip`` and
    ``color_jitter`` the augmentation; without ``train`` images are normalised only.
    """
    def get(key: str, default: Any = None) -> Any:
        if isinstance(cfg, Mapping):
            return cfg.get(key, default)
        return getattr(cfg, key, default)

    if train:
        low, high = get("scale_range", (0.5, 2.0))
        k = get("input_scale", 1.0)
        tf = train_transforms(get("crop_size"), scale=(low * k, high * k),
                              flip=get("flip", True), jitter=get("color_jitter", 0.25))
    else:
        tf = eval_transforms()
    return build_dataset(get("dataset"), get("data_root"), split, transform=tf,
                         **dict(get("dataset_kwargs") or {}))


__all__ = [
    "ADE20K", "COCOStuff", "DATASETS", "CamVid", "Cityscapes", "DataError", "FilePairDataset",
    "FolderDataset", "PascalContext", "SegmentationDataset", "Synthetic", "Transform",
    "build_dataset", "check_label_values", "check_pair", "dataset_options", "detect_dataset",
    "from_config", "read_classes",
    "read_image", "read_label",
]
