"""Data set loaders on fixtures in each real on-disk format, on ../shared/data when present,
and every bad input: missing folder, unreadable/truncated image, size mismatch, bad labels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from rtseg.data import (
    CamVid,
    Cityscapes,
    DataError,
    FolderDataset,
    build_dataset,
    read_classes,
    read_image,
    read_label,
)
from rtseg.data.cityscapes import BUILTIN_ID_TO_TRAIN_ID, builtin_tables, official_tables

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
CAMVID_ROOT = SHARED / "camvid"
CITYSCAPES_SAMPLE = SHARED / "cityscapes-sample"
needs_camvid = pytest.mark.skipif(
    not CAMVID_ROOT.is_dir(), reason=f"CamVid not present at {CAMVID_ROOT} (shared data only)"
)
needs_cityscapes_sample = pytest.mark.skipif(
    not CITYSCAPES_SAMPLE.is_dir(),
    reason=f"Cityscapes sample not present at {CITYSCAPES_SAMPLE} (shared data only)",
)


def save_rgb(path: Path, h: int, w: int, seed: int = 0) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    Image.fromarray(array).save(path)
    return array


def save_label(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.astype(np.uint8), mode="L").save(path)


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


# -- readers ----------------------------------------------------------------------------------


def test_read_image_converts_modes_to_rgb(tmp_path: Path) -> None:
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    Image.fromarray(grey, mode="L").save(tmp_path / "g.png")
    rgba = np.zeros((3, 4, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = 10
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    g = read_image(tmp_path / "g.png")
    a = read_image(tmp_path / "a.png")
    assert g.shape == (3, 3, 4) and g.dtype == torch.uint8
    assert torch.equal(g[0], torch.from_numpy(grey)) and torch.equal(g[0], g[2])
    assert a.shape == (3, 3, 4) and int(a[0, 0, 0]) == 200 and int(a[1].max()) == 0


def test_read_label_palette_png_gives_indices(tmp_path: Path) -> None:
    indices = np.array([[0, 1], [2, 255]], np.uint8)
    image = Image.fromarray(indices, mode="P")
    image.putpalette([10, 20, 30] * 256)
    image.save(tmp_path / "p.png")
    assert read_label(tmp_path / "p.png").tolist() == indices.tolist()


def test_read_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope\.png: missing image file"):
        read_image(tmp_path / "nope.png")
    save_rgb(tmp_path / "t.png", 64, 64)
    truncate(tmp_path / "t.png")
    with pytest.raises(DataError, match=r"t\.png: unreadable or truncated image"):
        read_image(tmp_path / "t.png")
    (tmp_path / "junk.png").write_bytes(b"this is not a png")
    with pytest.raises(DataError, match=r"junk\.png: unreadable or truncated label"):
        read_label(tmp_path / "junk.png")
    save_rgb(tmp_path / "rgb_mask.png", 4, 4)
    with pytest.raises(DataError, match=r"rgb_mask\.png: label has 3 channels"):
        read_label(tmp_path / "rgb_mask.png")


# -- Cityscapes ---------------------------------------------------------------------------------


def make_cityscapes(root: Path, split: str = "val", frames: int = 2, h: int = 16, w: int = 32):
    """The official layout with both label files per frame; returns the label id maps."""
    lut = np.full(256, 255, np.uint8)
    for label_id, train_id in BUILTIN_ID_TO_TRAIN_ID.items():
        lut[label_id] = train_id
    maps = []
    for i in range(frames):
        stem = f"aachen_{i:06d}_000019"
        save_rgb(root / "leftImg8bit" / split / "aachen" / f"{stem}_leftImg8bit.png", h, w, i)
        ids = np.random.default_rng(i).integers(0, 34, (h, w)).astype(np.uint8)
        base = root / "gtFine" / split / "aachen" / stem
        save_label(Path(f"{base}_gtFine_labelIds.png"), ids)
        save_label(Path(f"{base}_gtFine_labelTrainIds.png"), lut[ids])
        maps.append(ids)
    return maps


def test_cityscapes_label_ids_and_train_ids_agree(tmp_path: Path) -> None:
    maps = make_cityscapes(tmp_path)
    by_train = Cityscapes(tmp_path, "val", label_type="trainIds")
    by_ids = Cityscapes(tmp_path, "val", label_type="labelIds")
    assert len(by_train) == len(by_ids) == 2 and by_train.num_classes == 19
    assert by_train.name(0) == "aachen_000000_000019"
    for i in range(2):
        image, label = by_train.load(i)
        _, mapped = by_ids.load(i)
        assert image.shape == (3, 16, 32) and label.dtype == torch.int64
        assert torch.equal(label, mapped)
        # road (7) → 0, car (26) → 13, unlabeled (0) → 255
        ids = torch.from_numpy(maps[i].astype(np.int64))
        assert torch.all(label[ids == 7] == 0) and torch.all(label[ids == 26] == 13)
        assert torch.all(label[ids == 0] == 255)


def test_cityscapes_auto_falls_back_to_label_ids(tmp_path: Path) -> None:
    make_cityscapes(tmp_path, frames=1)
    expected = Cityscapes(tmp_path, "val", label_type="trainIds").load(0)[1]
    for f in (tmp_path / "gtFine").rglob("*_labelTrainIds.png"):
        f.unlink()
    assert torch.equal(Cityscapes(tmp_path, "val").load(0)[1], expected)
    with pytest.raises(DataError, match=r"image without label; missing .*labelTrainIds\.png"):
        Cityscapes(tmp_path, "val", label_type="trainIds")


def test_cityscapes_builtin_table_matches_cityscapesscripts() -> None:
    official = official_tables()
    if official is None:
        pytest.skip("cityscapesscripts is not installed (pip install cityscapesscripts)")
    lut, names, palette = builtin_tables()
    assert np.array_equal(lut, official[0])
    assert names == official[1] and palette == official[2]


def test_cityscapes_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="Cityscapes root folder does not exist"):
        Cityscapes(tmp_path / "absent", "val")
    make_cityscapes(tmp_path, frames=1)
    with pytest.raises(DataError, match=r"leftImg8bit/train: Cityscapes image folder does not"):
        Cityscapes(tmp_path, "train")
    ds = Cityscapes(tmp_path, "val", label_type="labelIds")
    label_path = next((tmp_path / "gtFine").rglob("*_labelIds.png"))
    bad = np.full((16, 32), 40, np.uint8)  # 40 is no Cityscapes label id
    save_label(label_path, bad)
    with pytest.raises(DataError, match=rf"{label_path.name}: values \[40\] are not Cityscapes"):
        ds.load(0)
    save_label(label_path, np.zeros((16, 30), np.uint8))
    with pytest.raises(DataError, match=r"size mismatch: image .*_leftImg8bit\.png is 32×16"):
        ds.load(0)
    train_ids = next((tmp_path / "gtFine").rglob("*_labelTrainIds.png"))
    save_label(train_ids, np.full((16, 32), 19, np.uint8))
    with pytest.raises(DataError, match=r"labelTrainIds\.png: label values 19 are outside"):
        Cityscapes(tmp_path, "val", label_type="trainIds").load(0)


@needs_cityscapes_sample
def test_cityscapes_shared_sample_label_files_agree() -> None:
    by_train = Cityscapes(CITYSCAPES_SAMPLE, "val", label_type="trainIds")
    by_ids = Cityscapes(CITYSCAPES_SAMPLE, "val", label_type="labelIds")
    assert len(by_train) == 1 and by_train.name(0) == "frankfurt_000000_000294"
    image, label = by_train.load(0)
    mapped = by_ids.load(0)[1]
    assert image.shape == (3, 128, 256)
    assert len(torch.unique(label)) > 5  # a real street frame has many classes
    # The sample's two label files were downscaled separately from 2048×1024, so they differ
    # at a few pixels on object boundaries (e.g. labelId 1 "ego vehicle" next to trainId 0);
    # everywhere else the official mapping must reproduce the trainIds file exactly.
    ids = read_label(next(CITYSCAPES_SAMPLE.rglob("*_gtFine_labelIds.png"))).float()[None, None]
    near_boundary = (F.max_pool2d(ids, 5, 1, 2) != -F.max_pool2d(-ids, 5, 1, 2))[0, 0]
    differ = label != mapped
    assert differ.float().mean() < 0.005
    assert not (differ & ~near_boundary).any()


# -- CamVid -------------------------------------------------------------------------------------


def make_camvid(root: Path, counts: dict[str, int], h: int = 12, w: int = 16) -> None:
    for split, n in counts.items():
        for i in range(n):
            save_rgb(root / split / f"0001TP_{i:06d}.png", h, w, i)
            label = np.random.default_rng(i).integers(0, 12, (h, w))  # 11 = void
            save_label(root / f"{split}annot" / f"0001TP_{i:06d}.png", label)


def test_camvid_fixture_maps_void_to_ignore(tmp_path: Path) -> None:
    make_camvid(tmp_path, {"train": 3, "val": 2})
    ds = CamVid(tmp_path, "train")
    assert len(ds) == 3 and len(CamVid(tmp_path, "trainval")) == 5
    assert ds.num_classes == 11 and ds.name(0) == "0001TP_000000"
    raw = read_label(tmp_path / "trainannot" / "0001TP_000000.png").long()
    image, label = ds.load(0)
    assert image.shape == (3, 12, 16)
    assert torch.equal(label, raw.masked_fill(raw == 11, 255))
    assert set(torch.unique(label).tolist()) <= set(range(11)) | {255}


def test_camvid_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="CamVid root folder does not exist"):
        CamVid(tmp_path / "absent")
    make_camvid(tmp_path, {"train": 2})
    with pytest.raises(DataError, match=r"/val: CamVid image folder does not exist"):
        CamVid(tmp_path, "val")
    (tmp_path / "trainannot" / "0001TP_000001.png").unlink()
    with pytest.raises(DataError, match=r"0001TP_000001\.png: image without label"):
        CamVid(tmp_path, "train")
    save_label(tmp_path / "trainannot" / "0001TP_000001.png", np.full((12, 16), 12))
    with pytest.raises(DataError, match=r"trainannot/0001TP_000001\.png: label values 12 are"):
        CamVid(tmp_path, "train").load(1)
    save_label(tmp_path / "trainannot" / "0001TP_000001.png", np.zeros((11, 16)))
    with pytest.raises(DataError, match=r"size mismatch: image .*train/0001TP_000001\.png"):
        CamVid(tmp_path, "train").load(1)
    truncate(tmp_path / "train" / "0001TP_000000.png")
    with pytest.raises(DataError, match=r"train/0001TP_000000\.png: unreadable or truncated"):
        CamVid(tmp_path, "train").load(0)


@needs_camvid
def test_camvid_shared_counts_and_first_frame() -> None:
    counts = {s: len(CamVid(CAMVID_ROOT, s)) for s in ("train", "val", "test")}
    assert counts == {"train": 367, "val": 101, "test": 233}
    image, label = CamVid(CAMVID_ROOT, "test").load(0)
    assert image.shape == (3, 360, 480) and label.shape == (360, 480)
    values = set(torch.unique(label).tolist())
    assert values <= set(range(11)) | {255} and len(values) >= 6


# -- folder --------------------------------------------------------------------------------------


def make_folder(root: Path, n: int = 3, classes: str = "yaml") -> None:
    for i in range(n):
        save_rgb(root / "images" / f"img{i}.jpg" if i == 0 else root / "images" / f"img{i}.png",
                 10, 14, i)
        mask = np.random.default_rng(i).integers(0, 3, (10, 14))
        mask[0, 0] = 255
        save_label(root / "masks" / f"img{i}.png", mask)
    if classes == "yaml":
        (root / "classes.yaml").write_text(
            "classes:\n  - {name: road, color: [128, 64, 128]}\n  - {name: car}\n"
            "  - {name: person, color: [220, 20, 60]}\nignore_index: 255\n"
        )
    elif classes == "json":
        (root / "classes.json").write_text(json.dumps(["road", "car", "person"]))
    else:
        (root / "classes.txt").write_text(
            "# my classes\nroad 128 64 128\ncar\ntraffic sign 1 2 3\n")


@pytest.mark.parametrize("fmt", ["yaml", "json", "txt"])
def test_folder_dataset_reads_every_class_file_format(tmp_path: Path, fmt: str) -> None:
    make_folder(tmp_path, classes=fmt)
    ds = FolderDataset(tmp_path)
    assert len(ds) == 3 and ds.num_classes == 3 and ds.ignore_index == 255
    assert [ds.name(i) for i in range(3)] == ["img0", "img1", "img2"]
    image, label = ds.load(1)
    assert image.shape == (3, 10, 14) and label.dtype == torch.int64
    assert int(label[0, 0]) == 255
    assert ds.palette[0] == (128, 64, 128) or fmt == "json"
    assert len(set(ds.palette)) == 3
    if fmt == "txt":
        assert ds.classes == ["road", "car", "traffic sign"] and ds.palette[2] == (1, 2, 3)


def test_folder_dataset_with_split_and_build_dataset(tmp_path: Path) -> None:
    make_folder(tmp_path / "train")
    ds = build_dataset("folder", tmp_path, "train")
    assert isinstance(ds, FolderDataset) and len(ds) == 3
    image, label = ds[(0, 123)]
    assert image.dtype == torch.float32 and float(image.min()) >= 0 and float(image.max()) <= 1


def test_folder_dataset_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="data set root folder does not exist"):
        FolderDataset(tmp_path / "absent")
    make_folder(tmp_path)
    (tmp_path / "masks" / "img2.png").unlink()
    with pytest.raises(DataError, match=r"img2\.png: image without mask"):
        FolderDataset(tmp_path)
    save_label(tmp_path / "masks" / "img2.png", np.full((10, 14), 3))
    with pytest.raises(DataError, match=r"masks/img2\.png: label values 3 are outside the 3"):
        FolderDataset(tmp_path).load(2)
    save_label(tmp_path / "masks" / "img2.png", np.zeros((10, 13)))
    with pytest.raises(DataError, match=r"size mismatch: image .*img2\.png is 14×10 \(W×H\) but"):
        FolderDataset(tmp_path).load(2)
    save_label(tmp_path / "masks" / "img2.png", np.zeros((10, 14)))
    truncate(tmp_path / "images" / "img0.jpg")
    with pytest.raises(DataError, match=r"img0\.jpg: unreadable or truncated image"):
        FolderDataset(tmp_path).load(0)
    save_rgb(tmp_path / "masks" / "extra.jpg", 10, 14)
    with pytest.raises(DataError, match=r"extra\.jpg: masks must be PNG"):
        FolderDataset(tmp_path)


@pytest.mark.parametrize(
    ("text", "suffix", "problem"),
    [
        ("classes: []\n", ".yaml", "no classes"),
        ("[road, road]", ".yaml", "duplicate class name 'road'"),
        ("classes: [road, car]\nignore_index: 1\n", ".yaml", "ignore_index 1 is a class index"),
        ("[{name: road, color: [1, 2]}]", ".yaml", "color must be three integers"),
        ("{not json", ".json", "invalid JSON"),
        ("road 1 2\n", ".txt", "expected 'name' or 'name R G B'"),
        ("road\n", ".csv", "unknown class file type"),
    ],
)
def test_read_classes_errors(tmp_path: Path, text: str, suffix: str, problem: str) -> None:
    path = tmp_path / f"classes{suffix}"
    path.write_text(text)
    with pytest.raises(DataError, match=rf"classes\{suffix}: .*{problem}"):
        read_classes(path)


def test_build_dataset_errors(tmp_path: Path) -> None:
    with pytest.raises(KeyError, match="unknown dataset 'pascal'"):
        build_dataset("pascal", tmp_path)
    with pytest.raises(DataError, match="needs a root folder"):
        build_dataset("camvid", None)
    with pytest.raises(DataError, match="camvid root folder does not exist"):
        build_dataset("camvid", tmp_path / "absent")
