"""COCO-Stuff-164k: the COCO 2017 images with 80 thing + 91 stuff classes (171 used).

Layout (``root`` is the folder holding ``images/`` and ``annotations/``)::

    root/images/{train2017,val2017}/{id}.jpg                         RGB images
    root/annotations/{train2017,val2017}/{id}_labelTrainIds.png      labels 0..170, 255 ignore

The official ``stuffthingmaps_trainval2017`` PNGs hold the 182 COCO-Stuff ids (0-based, 11 of
them unused) with 255 for unlabelled pixels; ``*_labelTrainIds.png`` are those maps with the
171 used ids renumbered 0..170 in id order (mmsegmentation's ``coco_stuff164k.py`` dataset
converter writes them next to the originals, which this loader does not read). 118 287 train
and 5 000 val images.

Class names: the official COCO-Stuff names of the 171 used ids, in that order. Palette:
mmsegmentation's for COCO-Stuff (a few classes share a colour there).
"""

from __future__ import annotations

from pathlib import Path

from ..utils import IGNORE_INDEX
from .io import (
    DataError,
    FilePairDataset,
    PathLike,
    Transform,
    hex_palette,
    require_dir,
)

COCO_STUFF_CLASSES = [
    # 80 things
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich",
    "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote",
    "keyboard", "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book",
    "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
    # 91 stuff
    "banner", "blanket", "branch", "bridge", "building-other", "bush", "cabinet", "cage",
    "cardboard", "carpet", "ceiling-other", "ceiling-tile", "cloth", "clothes", "clouds",
    "counter", "cupboard", "curtain", "desk-stuff", "dirt", "door-stuff", "fence",
    "floor-marble", "floor-other", "floor-stone", "floor-tile", "floor-wood", "flower", "fog",
    "food-other", "fruit", "furniture-other", "grass", "gravel", "ground-other", "hill", "house",
    "leaves", "light", "mat", "metal", "mirror-stuff", "moss", "mountain", "mud", "napkin",
    "net", "paper", "pavement", "pillow", "plant-other", "plastic", "platform", "playingfield",
    "railing", "railroad", "river", "road", "rock", "roof", "rug", "salad", "sand", "sea",
    "shelf", "sky-other", "skyscraper", "snow", "solid-other", "stairs", "stone", "straw",
    "structural-other", "table", "tent", "textile-other", "towel", "tree", "vegetable",
    "wall-brick", "wall-concrete", "wall-other", "wall-panel", "wall-stone", "wall-tile",
    "wall-wood", "water-other", "waterdrops", "window-blind", "window-other", "wood",
]  # fmt: skip

COCO_STUFF_PALETTE = hex_palette(
    "00c040 00c040 004060 80c0c0 004040 00c0e0 00c0c0 80c040 00c060 80c040",
    "8020c0 0000e0 000040 00a0c0 800060 8000c0 0020c0 8080e0 0000c0 80a0c0",
    "808000 800020 802000 800080 408020 00a000 000000 c080a0 002000 008080",
    "4080a0 80a000 008000 c08020 806080 000080 400020 00e080 800000 c000a0",
    "006080 808080 4000a0 80e080 808040 c00020 806000 8000c0 008020 40e000",
    "000040 8080a0 406000 0080c0 0080a0 c0e000 008040 808020 c02080 0040c0",
    "000020 40a080 804040 8000a0 402080 80c0c0 0000a0 c0a080 80c000 800060",
    "c02000 804080 408060 40a000 004000 c080e0 402000 00c080 4080e0 c0a000",
    "00c000 c08060 c06080 004080 400060 40e080 804000 c000e0 406080 80c080",
    "4000e0 c0e080 80c040 c00060 c06000 8040c0 008060 00e000 404040 8080e0",
    "006000 40c0c0 0080e0 80e000 40c040 808060 802080 4000c0 004060 00a080",
    "c00040 8040e0 002080 c080c0 0040e0 80a080 c08000 804020 802040 c00080",
    "40c020 00a040 400000 c0c0a0 002040 408080 40c0a0 80a040 408000 c0c020",
    "8060c0 400080 404020 00e0c0 c00000 c040a0 0060c0 c08080 4040a0 80e0c0",
    "c08040 c04020 806040 c000c0 00c020 40e040 400040 80c0a0 406040 4080c0",
    "00c0a0 c0e040 408040 80c020 c020c0 4040c0 004020 40a0c0 c04040 8040a0",
    "4020c0 c0c0c0 0040a0 c0a0c0 c0c000 804060 c02040 c04080 40c060 40a040",
    "404000",
)

# split name → the release's folder name (both accepted)
SPLITS = {"train": "train2017", "train2017": "train2017", "val": "val2017", "val2017": "val2017"}
LABEL_SUFFIX = "_labelTrainIds.png"


def is_coco_stuff(root: Path) -> bool:
    """Whether ``root`` holds ``annotations/`` and ``images/{train2017,val2017}``."""
    return (root / "annotations").is_dir() and any(
        (root / "images" / s).is_dir() for s in ("train2017", "val2017"))


class COCOStuff(FilePairDataset):
    """COCO-Stuff-164k, 171 classes, 255 = unlabelled.

    Args:
        root: the folder holding ``images/`` and ``annotations/``.
        split: "train" (or "train2017", 118 287 images) or "val" (or "val2017", 5 000).
        transform: ``transform(image, label, generator)``, see :class:`SegmentationDataset`.
        strict: False collects pairing problems in ``problems`` instead of raising.

    ``load(i)`` gives (image uint8 3×H×W, label int64 H×W with values in [0, 171) ∪ {255}).
    ``name(i)`` is the image stem, e.g. ``000000000139``.
    """

    classes = COCO_STUFF_CLASSES
    palette = COCO_STUFF_PALETTE
    ignore_index = IGNORE_INDEX

    def __init__(
        self, root: PathLike, split: str = "train", transform: Transform | None = None,
        strict: bool = True,
    ) -> None:
        self._start(root, split, SPLITS, "COCO-Stuff", transform, strict)
        folder = SPLITS[split]
        image_dir = require_dir(self.root / "images" / folder, "COCO-Stuff image")
        label_dir = require_dir(self.root / "annotations" / folder, "COCO-Stuff label")
        if (next(label_dir.glob(f"*{LABEL_SUFFIX}"), None) is None
                and next(label_dir.glob("*.png"), None) is not None):
            raise DataError(
                f"{label_dir}: no *{LABEL_SUFFIX} files, only other PNGs (the official "
                "stuffthingmaps?); convert them to 171 train ids first, e.g. with "
                "mmsegmentation's tools/dataset_converters/coco_stuff164k.py")
        self.samples = self._pair_by_name(image_dir, label_dir, ".jpg", LABEL_SUFFIX)
