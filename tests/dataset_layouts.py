"""ADE20K, PASCAL-Context and COCO-Stuff fixtures written in each release's exact layout
(imported by their tests)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

H, W = 12, 16


def save_rgb(path: Path, h: int = H, w: int = W, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(path)  # JPEG or PNG by the suffix


def save_label(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.astype(np.uint8), mode="L").save(path)


def random_label(seed: int, high: int, first: list[int], h: int = H, w: int = W) -> np.ndarray:
    """Values in [0, high) with ``first`` written at the start of row 0."""
    label = np.random.default_rng(100 + seed).integers(0, high, (h, w))
    label[0, : len(first)] = first
    return label


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


# -- fixtures in the real layouts ---------------------------------------------------------------


def make_ade(root: Path, counts: dict[str, int] | None = None) -> Path:
    """``root/ADEChallengeData2016/{images,annotations}/{training,validation}``; labels hold
    0 ("other"), 1 and 150 in row 0."""
    base = root / "ADEChallengeData2016"
    for folder, n in (counts or {"training": 3}).items():
        prefix = "train" if folder == "training" else "val"
        for i in range(n):
            stem = f"ADE_{prefix}_{i + 1:08d}"
            save_rgb(base / "images" / folder / f"{stem}.jpg", seed=i)
            save_label(base / "annotations" / folder / f"{stem}.png",
                       random_label(i, 151, [0, 1, 150]))
    return base


def make_context(root: Path, counts: dict[str, int] | None = None) -> Path:
    """``root/VOCdevkit/VOC2010/`` with JPEGImages, SegmentationClassContext and the split
    lists; labels hold 0 (background), 1 and 59 in row 0. One more image and label exist that no
    list names (VOC2010 holds far more images than PASCAL-Context lists)."""
    base = root / "VOCdevkit" / "VOC2010"
    for split, n in (counts or {"train": 3}).items():
        year = 2008 if split == "train" else 2009
        ids = [f"{year}_{i:06d}" for i in range(n)]
        for i, stem in enumerate(ids):
            save_rgb(base / "JPEGImages" / f"{stem}.jpg", seed=i)
            save_label(base / "SegmentationClassContext" / f"{stem}.png",
                       random_label(i, 60, [0, 1, 59]))
        lists = base / "ImageSets" / "SegmentationContext"
        lists.mkdir(parents=True, exist_ok=True)
        (lists / f"{split}.txt").write_text("".join(f"{s}\n" for s in ids))
    save_rgb(base / "JPEGImages" / "2010_999999.jpg")
    save_label(base / "SegmentationClassContext" / "2010_999999.png", random_label(9, 60, []))
    return base


def make_coco(root: Path, counts: dict[str, int] | None = None) -> Path:
    """``root/{images,annotations}/{train2017,val2017}``: ``*_labelTrainIds.png`` with 0, 170
    and 255 in row 0, next to the official stuffthingmaps (ids up to 181), which are not read."""
    for folder, n in (counts or {"train2017": 3}).items():
        for i in range(n):
            stem = f"{i + 139:012d}"
            save_rgb(root / "images" / folder / f"{stem}.jpg", seed=i)
            label = random_label(i, 171, [0, 170, 255])
            save_label(root / "annotations" / folder / f"{stem}_labelTrainIds.png", label)
            save_label(root / "annotations" / folder / f"{stem}.png", label + 11)
    return root
