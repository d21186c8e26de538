"""Procedural street scenes made in memory: a data set that needs no download.

Each sample is rendered from its own random stream, seeded by ``(seed, split, index)``, so it
is identical on every machine and in every worker, and the train/val/test splits never share
a scene. Any image size works; a 256×512 scene takes a few milliseconds (vectorised numpy).
How the scenes are built (colour alone does not give the class; thin structures, small objects
and large regions in every split): :mod:`rtseg.data.street_scenes`.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from .io import DataError, SegmentationDataset, Transform
from .street_scenes import SPLITS, SYNTHETIC_CLASSES, SYNTHETIC_PALETTE, render_scene

DEFAULT_NUM_IMAGES = {"train": 2000, "val": 200, "test": 200}


class Synthetic(SegmentationDataset):
    """Procedural street scenes (see the module docstring), 8 classes, no ignored pixels.

    Args:
        split: "train", "val" or "test"; each split has its own random streams.
        num_images: length of the split (default 2000 train, 200 val, 200 test), or a mapping
            from split name to length (``{"train": 400, "val": 40}``; missing splits: default).
        size: (H, W) of every image.
        seed: data set seed; sample i of a split is a function of (seed, split, i) only.
        transform: ``transform(image, label, generator)``, see :class:`SegmentationDataset`.

    ``load(i)`` gives (image uint8 3×H×W, label int64 H×W in [0, 8)).
    """

    classes = SYNTHETIC_CLASSES
    palette = SYNTHETIC_PALETTE
    ignore_index = 255
    needs_root = False

    def __init__(
        self,
        split: str = "train",
        num_images: int | Mapping[str, int] | None = None,
        size: tuple[int, int] = (256, 512),
        seed: int = 0,
        transform: Transform | None = None,
    ) -> None:
        if split not in SPLITS:
            raise DataError(f"unknown synthetic split {split!r}; use one of {list(SPLITS)}")
        height, width = (int(v) for v in size)
        if height < 8 or width < 8:
            raise DataError(f"synthetic images need H, W >= 8, got {size}")
        self.split = split
        if isinstance(num_images, Mapping):
            unknown = sorted(set(num_images) - set(SPLITS))
            if unknown:
                raise DataError(f"num_images: unknown synthetic split(s) {', '.join(unknown)}; "
                                f"use {list(SPLITS)}")
            num_images = num_images.get(split)
        self.num_images = DEFAULT_NUM_IMAGES[split] if num_images is None else int(num_images)
        if self.num_images < 0:
            raise ValueError(f"num_images must be >= 0, got {num_images}")
        self.size = (height, width)
        self.seed = int(seed)
        self.transform = transform

    def __len__(self) -> int:
        return self.num_images

    def name(self, index: int) -> str:
        return f"synthetic_{self.split}_{self._check_index(index):06d}"

    def load(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, label = render_scene(self.seed, self.split, self._check_index(index), self.size)
        return (
            torch.from_numpy(image).permute(2, 0, 1).contiguous(),
            torch.from_numpy(label).long(),
        )
