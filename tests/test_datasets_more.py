"""ADE20K, PASCAL-Context (59) and COCO-Stuff-164k on fixtures written in each release's exact
layout; every bad input the other loaders reject; layout detection; and ADE20K's short-side
evaluation protocol against a plainly written reference."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

import rtseg
from rtseg.cli import build_parser, main
from rtseg.cli.infer import _options
from rtseg.data import (
    ADE20K,
    DATASETS,
    COCOStuff,
    DataError,
    PascalContext,
    build_dataset,
    detect_dataset,
)
from rtseg.data.ade20k import ADE20K_PALETTE
from rtseg.data.check import check_dataset
from rtseg.inference.evaluate import evaluate_dataset
from rtseg.inference.tta import predict_probs, short_side_size
from rtseg.segmenter import Segmenter
from tests.dataset_layouts import (
    H,
    W,
    make_ade,
    make_coco,
    make_context,
    save_label,
    save_rgb,
    truncate,
)


@dataclass
class Layout:
    cls: type
    make: Callable[[Path], Path]  # writes 3 train samples, returns the release folder
    image: Callable[[Path, int], Path]  # (release folder, i) → image of train sample i
    label: Callable[[Path, int], Path]
    bad_value: int  # the smallest label file value that is no class and not ignored
    what: str  # the name in messages


LAYOUTS = {
    "ade20k": Layout(
        ADE20K, make_ade,
        lambda b, i: b / "images" / "training" / f"ADE_train_{i + 1:08d}.jpg",
        lambda b, i: b / "annotations" / "training" / f"ADE_train_{i + 1:08d}.png",
        151, "ADE20K"),
    "pascal_context": Layout(
        PascalContext, make_context,
        lambda b, i: b / "JPEGImages" / f"2008_{i:06d}.jpg",
        lambda b, i: b / "SegmentationClassContext" / f"2008_{i:06d}.png",
        60, "PASCAL-Context"),
    "coco_stuff": Layout(
        COCOStuff, make_coco,
        lambda b, i: b / "images" / "train2017" / f"{i + 139:012d}.jpg",
        lambda b, i: b / "annotations" / "train2017" / f"{i + 139:012d}_labelTrainIds.png",
        171, "COCO-Stuff"),
}


# -- class tables -------------------------------------------------------------------------------


@pytest.mark.parametrize(("cls", "k", "first", "last"), [
    (ADE20K, 150, "wall", "flag"),
    (PascalContext, 59, "aeroplane", "wood"),
    (COCOStuff, 171, "person", "wood"),
])
def test_class_tables(cls: type, k: int, first: str, last: str) -> None:
    assert len(cls.classes) == len(set(cls.classes)) == len(cls.palette) == k
    assert (cls.classes[0], cls.classes[-1]) == (first, last)
    assert cls.ignore_index == 255
    for color in cls.palette:
        assert len(color) == 3 and all(isinstance(v, int) and 0 <= v <= 255 for v in color)


def test_palettes_are_mmsegmentations() -> None:
    assert ADE20K.palette[:3] == [(120, 120, 120), (180, 120, 120), (6, 230, 230)]
    assert ADE20K.palette[-1] == (92, 0, 255)
    assert PascalContext.palette == ADE20K_PALETTE[1:60]
    assert PascalContext.palette[-1] == (31, 0, 255)
    assert COCOStuff.palette[:3] == [(0, 192, 64), (0, 192, 64), (0, 64, 96)]
    assert COCOStuff.palette[-1] == (64, 64, 0)
    # things first, then stuff
    assert COCOStuff.classes[79:81] == ["toothbrush", "banner"]


# -- loaders ------------------------------------------------------------------------------------


def test_ade20k_maps_other_to_ignore_and_shifts_classes(tmp_path: Path) -> None:
    base = make_ade(tmp_path, {"training": 3, "validation": 2})
    for root in (tmp_path, base):  # the folder holding the release, or the release itself
        ds = ADE20K(root, "train")
        assert len(ds) == 3 and ds.num_classes == 150 and ds.name(0) == "ADE_train_00000001"
    assert len(ADE20K(tmp_path, "val")) == len(ADE20K(tmp_path, "validation")) == 2
    assert ADE20K(tmp_path, "training").samples == ADE20K(tmp_path, "train").samples
    image, label = ADE20K(tmp_path, "train").load(0)
    raw = torch.from_numpy(np.array(Image.open(LAYOUTS["ade20k"].label(base, 0)))).long()
    assert image.shape == (3, H, W) and label.dtype == torch.int64
    assert label[0, :3].tolist() == [255, 0, 149]
    assert torch.equal(label, torch.where(raw == 0, 255, raw - 1))
    with pytest.raises(DataError, match="unknown ADE20K split 'test'"):
        ADE20K(tmp_path, "test")


def test_pascal_context_ignores_background_and_reads_the_lists(tmp_path: Path) -> None:
    base = make_context(tmp_path, {"train": 3, "val": 2})
    for root in (tmp_path, tmp_path / "VOCdevkit", base):
        assert len(PascalContext(root, "train")) == 3
    ds = PascalContext(tmp_path, "val")
    assert len(ds) == 2 and ds.num_classes == 59 and ds.name(1) == "2009_000001"
    _, label = PascalContext(tmp_path, "train").load(0)
    raw = torch.from_numpy(np.array(Image.open(LAYOUTS["pascal_context"].label(base, 0))))
    assert label[0, :3].tolist() == [255, 0, 58]
    assert torch.equal(label, torch.where(raw == 0, 255, raw.long() - 1))
    # a repeated id is read once; an empty list is an error
    lists = base / "ImageSets" / "SegmentationContext"
    (lists / "train.txt").write_text("2008_000000\n2008_000000\n\n2008_000001\n")
    assert len(PascalContext(tmp_path, "train")) == 2
    (lists / "train.txt").write_text("\n")
    with pytest.raises(DataError, match=r"train\.txt: the split list is empty"):
        PascalContext(tmp_path, "train")


def test_coco_stuff_reads_train_ids_and_keeps_255(tmp_path: Path) -> None:
    make_coco(tmp_path, {"train2017": 3, "val2017": 1})
    ds = COCOStuff(tmp_path, "train")
    assert len(ds) == 3 and ds.num_classes == 171 and ds.name(0) == "000000000139"
    assert len(COCOStuff(tmp_path, "val2017")) == 1
    _, label = ds.load(0)
    raw = np.array(Image.open(LAYOUTS["coco_stuff"].label(tmp_path, 0)))
    assert label[0, :3].tolist() == [0, 170, 255]
    assert torch.equal(label, torch.from_numpy(raw).long())


def test_coco_stuff_without_train_id_files_says_how_to_make_them(tmp_path: Path) -> None:
    make_coco(tmp_path)
    for f in (tmp_path / "annotations").rglob("*_labelTrainIds.png"):
        f.unlink()
    with pytest.raises(DataError, match=r"train2017: no \*_labelTrainIds\.png files.*convert"):
        COCOStuff(tmp_path, "train")


@pytest.mark.parametrize("name", LAYOUTS)
def test_missing_root_and_split(tmp_path: Path, name: str) -> None:
    layout = LAYOUTS[name]
    with pytest.raises(DataError, match=f"{layout.what} root folder does not exist"):
        layout.cls(tmp_path / "absent", "train")
    layout.make(tmp_path)
    missing = (r"val\.txt: missing split list" if name == "pascal_context"
               else f"{layout.what} image folder does not exist")
    with pytest.raises(DataError, match=missing):
        layout.cls(tmp_path, "val")


@pytest.mark.parametrize("name", LAYOUTS)
def test_unpaired_files_raise_or_are_collected(tmp_path: Path, name: str) -> None:
    layout = LAYOUTS[name]
    base = layout.make(tmp_path)
    layout.label(base, 1).unlink()
    with pytest.raises(DataError, match=rf"{layout.image(base, 1).name}: image without label"):
        layout.cls(tmp_path, "train")
    layout.image(base, 2).unlink()
    ds = layout.cls(tmp_path, "train", strict=False)
    assert len(ds) == 1 and ds.name(0) == layout.image(base, 0).stem
    assert len(ds.problems) == 2
    assert f"{layout.image(base, 1)}: image without label" in "\n".join(ds.problems)
    assert f"{layout.label(base, 2)}: label without image" in "\n".join(ds.problems)
    save_rgb(layout.image(base, 2), seed=2)
    with pytest.raises(DataError, match="image without label"):
        build_dataset(name, tmp_path, "train")


def test_pascal_context_listed_id_without_any_file(tmp_path: Path) -> None:
    base = make_context(tmp_path)
    lists = base / "ImageSets" / "SegmentationContext" / "train.txt"
    lists.write_text(lists.read_text() + "2008_000777\n")
    with pytest.raises(DataError, match=r"'2008_000777' is listed but neither .*2008_000777"):
        PascalContext(tmp_path, "train")
    assert len(PascalContext(tmp_path, "train", strict=False)) == 3


@pytest.mark.parametrize("name", LAYOUTS)
def test_bad_files_name_the_file(tmp_path: Path, name: str) -> None:
    layout = LAYOUTS[name]
    base = layout.make(tmp_path)
    ds = layout.cls(tmp_path, "train")
    label = layout.label(base, 1)
    save_label(label, np.full((H, W), layout.bad_value))
    with pytest.raises(DataError, match=rf"{label.name}: label values {layout.bad_value} are"):
        ds.load(1)
    save_label(label, np.zeros((H, W - 1)))
    with pytest.raises(DataError, match=rf"size mismatch: image .*{layout.image(base, 1).name} "
                                        rf"is {W}×{H}"):
        ds.load(1)
    save_rgb(label)  # a colour-coded mask
    with pytest.raises(DataError, match=rf"{label.name}: label has 3 channels"):
        ds.load(1)
    truncate(layout.label(base, 2))
    with pytest.raises(DataError, match=rf"{layout.label(base, 2).name}: unreadable or truncated"):
        ds.load(2)
    truncate(layout.image(base, 0))
    with pytest.raises(DataError, match=rf"{layout.image(base, 0).name}: unreadable or truncated "
                                        "image"):
        ds.load(0)


@pytest.mark.parametrize("name", LAYOUTS)
def test_check_data_collects_every_problem(tmp_path: Path, name: str) -> None:
    layout = LAYOUTS[name]
    base = layout.make(tmp_path)
    layout.label(base, 0).unlink()
    truncate(layout.image(base, 2))
    report = check_dataset(tmp_path, splits=["train"], progress=False)
    assert report["dataset"] == name and report["splits"] == {"train": 2}
    assert len(report["problems"]) == 2
    assert "image without label" in report["problems"][0]
    assert "unreadable or truncated image" in report["problems"][1]


# -- registry and detection ---------------------------------------------------------------------


def test_registry_and_build_dataset(tmp_path: Path) -> None:
    assert DATASETS["ade20k"] is ADE20K and DATASETS["pascal_context"] is PascalContext
    assert DATASETS["coco_stuff"] is COCOStuff
    roots = {"ade20k": tmp_path / "ade", "pascal_context": tmp_path / "ctx",
             "coco_stuff": tmp_path / "coco"}
    for name, root in roots.items():
        LAYOUTS[name].make(root)
        ds = build_dataset(name, root, "train")
        assert isinstance(ds, LAYOUTS[name].cls) and len(ds) == 3
        image, label = ds[(0, 7)]
        assert image.dtype == torch.float32 and label.shape == (H, W)


def test_detect_dataset_tells_every_layout_apart(tmp_path: Path) -> None:
    ade = make_ade(tmp_path / "ade")
    assert detect_dataset(tmp_path / "ade") == detect_dataset(ade) == "ade20k"
    ctx = make_context(tmp_path / "ctx")
    for root in (tmp_path / "ctx", tmp_path / "ctx" / "VOCdevkit", ctx):
        assert detect_dataset(root) == "pascal_context"
    assert detect_dataset(make_coco(tmp_path / "coco")) == "coco_stuff"
    # the older layouts are unchanged
    (tmp_path / "cs" / "leftImg8bit").mkdir(parents=True)
    assert detect_dataset(tmp_path / "cs") == "cityscapes"
    (tmp_path / "cv" / "trainannot").mkdir(parents=True)
    assert detect_dataset(tmp_path / "cv") == "camvid"
    # images/ and annotations/ without the ADE20K or COCO split folders: a user's folder
    for sub in ("images/train", "annotations", "masks"):
        (tmp_path / "own" / sub).mkdir(parents=True)
    assert detect_dataset(tmp_path / "own") == "folder"
    (tmp_path / "none").mkdir()
    with pytest.raises(DataError, match="ADE20K .*COCO-Stuff .*PASCAL-Context"):
        detect_dataset(tmp_path / "none")


# -- ADE20K's short-side protocol ---------------------------------------------------------------


def reference(model: nn.Module, image: torch.Tensor, short: int,
              scales: tuple[float, ...] = (1.0,)) -> torch.Tensor:
    """Resize to a shorter side of ``short`` (times each scale), predict there (the softmax of
    the model's logits, brought to that size), resize the probabilities back to the original
    size, average over scales."""
    h, w = image.shape[-2:]
    base = (short, round(w * short / h)) if h <= w else (round(h * short / w), short)
    total = 0
    for s in scales:
        size = (round(base[0] * s), round(base[1] * s))
        x = F.interpolate(image, size=size, mode="bilinear", align_corners=False)
        probs = model(x).softmax(1)
        if probs.shape[-2:] != x.shape[-2:]:
            probs = F.interpolate(probs, size=size, mode="bilinear", align_corners=False)
        total = total + F.interpolate(probs, size=(h, w), mode="bilinear", align_corners=False)
    return total / len(scales)


class Recorder(nn.Module):
    """A strided conv (logits at half the input size) that records its input sizes."""

    def __init__(self, k: int = 4) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, k, 3, stride=2, padding=1)
        self.sizes: list[tuple[int, int]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.sizes.append(tuple(x.shape[-2:]))
        return self.conv(x) * 4


def test_short_side_size() -> None:
    assert short_side_size((375, 500), 512) == (512, 683)
    assert short_side_size((500, 375), 512) == (683, 512)
    assert short_side_size((512, 512), 512) == (512, 512)
    assert short_side_size((1024, 2048), 512) == (512, 1024)
    for bad in (0, -3, 1.5, True, "512"):
        with pytest.raises(ValueError, match="short_side must be a positive integer"):
            short_side_size((10, 10), bad)


@pytest.mark.parametrize("hw", [(15, 20), (21, 14)])
def test_short_side_matches_the_reference(hw: tuple[int, int]) -> None:
    model = Recorder().eval()
    image = torch.randn(2, 3, *hw)
    out = predict_probs(model, image, short_side=24)
    assert out.shape == (2, 4, *hw)
    assert model.sizes == [(24, 32) if hw[0] < hw[1] else (36, 24)]
    torch.testing.assert_close(out, reference(model, image, 24), rtol=0, atol=1e-6)
    scaled = predict_probs(model, image, short_side=24, scales=(0.5, 1.25))
    torch.testing.assert_close(scaled, reference(model, image, 24, (0.5, 1.25)), rtol=0,
                               atol=1e-6)
    assert not torch.allclose(out, predict_probs(model, image))  # the resize matters


def test_short_side_with_sliding_windows() -> None:
    torch.manual_seed(0)
    pointwise = nn.Conv2d(3, 5, 1).eval()  # sliding windows then equal one whole pass
    image = torch.randn(1, 3, 15, 20)
    out = predict_probs(pointwise, image, mode="slide", crop=(16, 16), stride=(8, 8),
                         short_side=24)
    torch.testing.assert_close(out, reference(pointwise, image, 24), rtol=0, atol=1e-6)


def test_segmenter_and_evaluate_take_short_side(tmp_path: Path) -> None:
    model = Recorder(k=150).eval()
    seg = Segmenter(model, ADE20K.classes, ADE20K.palette, device="cpu", short_side=24)
    labels = seg(torch.rand(3, 15, 20))
    assert labels.shape == (15, 20) and model.sizes == [(24, 32)]

    make_ade(tmp_path, {"validation": 2})
    ds = ADE20K(tmp_path, "val")
    got = rtseg.evaluate(model, data=ds, short_side=24, device="cpu", progress=False)

    class Plain(nn.Module):  # the protocol as the reference writes it, as one model pass
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return reference(self.model, x, 24).log()

    want = evaluate_dataset(Plain(), ds, "cpu", progress=False)
    assert got["short_side"] == 24 and got["images"] == 2
    assert got["miou"] == pytest.approx(want["miou"])
    np.testing.assert_allclose(got["iou"], want["iou"], equal_nan=True)
    assert got["pixel_acc"] == pytest.approx(want["pixel_acc"])
    with pytest.raises(ValueError, match="short_side must be a positive integer"):
        rtseg.evaluate(model, data=ds, short_side=0, device="cpu", progress=False)


def test_cli_short_side_option(capsys: pytest.CaptureFixture[str]) -> None:
    args = build_parser().parse_args(["eval", "best.pt", "--short-side", "512"])
    assert args.short_side == 512 and _options(args)["short_side"] == 512
    assert build_parser().parse_args(["eval", "best.pt"]).short_side is None
    with pytest.raises(SystemExit) as stop:
        main(["eval", "best.pt", "--short-side", "0"])
    assert stop.value.code == 2
    assert "--short-side: must be a positive integer, got '0'" in capsys.readouterr().err
