"""ADE20K (the MIT Scene Parsing Benchmark release, ADEChallengeData2016), 150 classes.

Layout (``root`` is ``ADEChallengeData2016/`` or the folder holding it)::

    ADEChallengeData2016/images/{training,validation}/ADE_{train,val}_*.jpg      RGB images
    ADEChallengeData2016/annotations/{training,validation}/ADE_{train,val}_*.png  labels

Labels are single-channel PNGs: 0 is "other" (not one of the 150 classes, not scored), 1..150
are the classes of ``objectInfo150``. rtseg maps 0 to 255 and class c to c - 1 (the usual
"reduce zero label"). 20 210 training and 2 000 validation images of varying size; the common
evaluation resizes each image to a shorter side of 512 (``rtseg eval --short-side 512``).

Class names: the first name of each entry of the benchmark's ``objectInfo150`` table. Palette:
the one mmsegmentation uses for ADE20K (it gives road and skyscraper the same grey).
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..utils import IGNORE_INDEX
from .io import (
    FilePairDataset,
    PathLike,
    Transform,
    hex_palette,
    reduce_zero_label,
    require_dir,
)

ADE20K_CLASSES = [
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane",
    "grass", "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant",
    "curtain", "chair", "car", "water", "painting", "sofa", "shelf", "house", "sea", "mirror",
    "rug", "field", "armchair", "seat", "fence", "desk", "rock", "wardrobe", "lamp", "bathtub",
    "railing", "cushion", "base", "box", "column", "signboard", "chest of drawers", "counter",
    "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand", "path", "stairs",
    "runway", "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge",
    "bookcase", "blind", "coffee table", "toilet", "flower", "book", "hill", "bench",
    "countertop", "stove", "palm", "kitchen island", "computer", "swivel chair", "boat", "bar",
    "arcade machine", "hovel", "bus", "towel", "light", "truck", "tower", "chandelier",
    "awning", "streetlight", "booth", "television receiver", "airplane", "dirt track",
    "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle", "buffet",
    "poster", "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer",
    "plaything", "swimming pool", "stool", "barrel", "basket", "waterfall", "tent", "bag",
    "minibike", "cradle", "oven", "ball", "food", "step", "tank", "trade name", "microwave",
    "pot", "animal", "bicycle", "lake", "dishwasher", "screen", "blanket", "sculpture", "hood",
    "sconce", "vase", "traffic light", "tray", "ashcan", "fan", "pier", "crt screen", "plate",
    "monitor", "bulletin board", "shower", "radiator", "glass", "clock", "flag",
]  # fmt: skip


# mmsegmentation's ADE20K colours, in class order (PASCAL-Context reuses entries 1..59).
ADE20K_PALETTE = hex_palette(
    "787878 b47878 06e6e6 503232 04c803 787850 8c8c8c cc05ff e6e6e6 04fa07",
    "e005ff ebff07 96053d 787846 08ff33 ff0652 8fff8c ccff04 ff3307 cc4603",
    "0066c8 3de6fa ff0633 0b66ff ff0747 ff09e0 0907e6 dcdcdc ff095c 7009ff",
    "08ffd6 07ffe0 ffb806 0aff47 ff290a 07ffff e0ff08 6608ff ff3d06 ffc207",
    "ff7a08 00ff14 ff0829 ff0599 0633ff eb0cff a09614 00a3ff 8c8c8c fa0a0f",
    "14ff00 1fff00 ff1f00 ffe000 99ff00 0000ff ff4700 00ebff 00adff 1f00ff",
    "0bc8c8 ff5200 00fff5 003dff 00ff70 00ff85 ff0000 ffa300 ff6600 c2ff00",
    "008fff 33ff00 0052ff 00ff29 00ffad 0a00ff adff00 00ff99 ff5c00 ff00ff",
    "ff00f5 ff0066 ffad00 ff0014 ffb8b8 001fff 00ff3d 0047ff ff00cc 00ffc2",
    "00ff52 000aff 0070ff 3300ff 00c2ff 007aff 00ffa3 ff9900 00ff0a ff7000",
    "8fff00 5200ff a3ff00 ffeb00 08b8aa 8500ff 00ff5c b800ff ff001f 00b8ff",
    "00d6ff ff0070 5cff00 00e0ff 70e0ff 46b8a0 a300ff 9900ff 47ff00 ff00a3",
    "ffcc00 ff008f 00ffeb 85ff00 ff00eb f500ff ff007a fff500 0abed4 d6ff00",
    "00ccff 1400ff ffff00 0099ff 0029ff 00ffcc 2900ff 29ff00 ad00ff 00f5ff",
    "4700ff 7a00ff 00ffb8 005cff b8ff00 0085ff ffd600 19c2c2 66ff00 5c00ff",
)

RELEASE = "ADEChallengeData2016"
# split name → the release's folder name (both accepted)
SPLITS = {"train": "training", "training": "training", "val": "validation",
          "validation": "validation"}


def is_ade20k(root: Path) -> bool:
    """Whether ``root`` (or its ``ADEChallengeData2016/``) holds the ADE20K layout."""
    base = root / RELEASE if (root / RELEASE).is_dir() else root
    return (base / "annotations").is_dir() and any(
        (base / "images" / s).is_dir() for s in ("training", "validation"))


class ADE20K(FilePairDataset):
    """ADE20K scene parsing, 150 classes, "other" (file value 0) → 255.

    Args:
        root: ``ADEChallengeData2016/`` or the folder holding it.
        split: "train" (or "training", 20 210 images) or "val" (or "validation", 2 000).
        transform: ``transform(image, label, generator)``, see :class:`SegmentationDataset`.
        strict: False collects pairing problems in ``problems`` instead of raising.

    ``load(i)`` gives (image uint8 3×H×W, label int64 H×W with values in [0, 150) ∪ {255}).
    ``name(i)`` is the file stem, e.g. ``ADE_val_00000001``.
    """

    classes = ADE20K_CLASSES
    palette = ADE20K_PALETTE
    ignore_index = IGNORE_INDEX

    def __init__(
        self, root: PathLike, split: str = "train", transform: Transform | None = None,
        strict: bool = True,
    ) -> None:
        self._start(root, split, SPLITS, "ADE20K", transform, strict, RELEASE)
        folder = SPLITS[split]
        self.samples = self._pair_by_name(
            require_dir(self.root / "images" / folder, "ADE20K image"),
            require_dir(self.root / "annotations" / folder, "ADE20K label"), ".jpg", ".png")

    def map_label(self, label: torch.Tensor) -> torch.Tensor:
        return reduce_zero_label(label, self.num_classes, self.ignore_index)
