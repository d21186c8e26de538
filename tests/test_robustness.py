"""Hostile input: mutated image files through every reader, loader and predict; bad checkpoints.

The fuzz part makes 540 files from eight valid images (PNG RGB, palette, grey, RGBA and 16-bit
grey; JPEG RGB, grey and CMYK) by bit flips, truncations, wrong headers, chunk damage and
absurd sizes (a 1×100000 image, a 60 000×60 000 header). Each file goes through ``read_image``,
``read_label``, the CamVid, Cityscapes and folder loaders (as an image and as a label) and
``predict``. The outcome must be a decode or a ``DataError`` naming the file: no other
exception, no image decoded beyond rtseg's pixel limit, no memory blow-up. Counts are printed
(``pytest -s``). ``RTSEG_FUZZ_FILES=5000`` runs a longer version.
"""

from __future__ import annotations

import io
import os
import random
import resource
import struct
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import rtseg
from rtseg.data import CamVid, Cityscapes, DataError, FolderDataset, read_image, read_label
from rtseg.errors import CheckpointError, UsageError
from rtseg.predict import predict_path
from rtseg.training.checkpoint import load_checkpoint, save_atomic

N_FILES = int(os.environ.get("RTSEG_FUZZ_FILES", "540"))


def _encode(image: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return buf.getvalue()


def _seeds() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))
    grey = Image.fromarray(rng.integers(0, 11, (24, 32), dtype=np.uint8))
    return {
        "png_rgb": _encode(rgb, "PNG"),
        "png_palette": _encode(rgb.convert("P"), "PNG"),
        "png_grey": _encode(grey, "PNG"),
        "png_rgba": _encode(rgb.convert("RGBA"), "PNG"),
        "png_16bit": _encode(Image.fromarray(rng.integers(0, 65535, (24, 32), dtype=np.uint16)),
                             "PNG"),
        "jpeg_rgb": _encode(rgb, "JPEG", quality=90),
        "jpeg_grey": _encode(grey, "JPEG"),
        "jpeg_cmyk": _encode(rgb.convert("CMYK"), "JPEG"),
    }


def _png_with_size(width: int, height: int) -> bytes:
    """A PNG whose IHDR (with a valid CRC) claims width×height; the data are a few bytes."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def mutants(n: int, seed: int = 0) -> list[tuple[str, bytes]]:
    """n (kind, bytes) pairs: fixed hostile cases, then random mutations of the seeds."""
    rng = random.Random(seed)
    seeds = _seeds()
    wide = _encode(Image.new("RGB", (100000, 1), (10, 20, 30)), "PNG")
    cases = [("valid_" + k, v) for k, v in seeds.items()]
    cases += [("size_60000x60000", _png_with_size(60000, 60000)),
              ("size_1x100000", wide), ("size_0x0", _png_with_size(0, 0)),
              ("empty", b""), ("random", bytes(rng.randrange(256) for _ in range(500))),
              ("text", b"not an image at all\n" * 10)]
    names = sorted(seeds)
    while len(cases) < n:
        name = names[len(cases) % len(names)]
        data = bytearray(seeds[name])
        kind = rng.choice(["bitflip", "truncate", "header", "chunk", "zero_run", "splice"])
        if kind == "bitflip":
            for _ in range(rng.randint(1, 20)):
                pos = rng.randrange(len(data))
                data[pos] ^= 1 << rng.randrange(8)
        elif kind == "truncate":
            data = data[: rng.randrange(1, len(data))]
        elif kind == "header":
            data[: rng.randint(1, 8)] = bytes(rng.randrange(256) for _ in range(8))[:8]
        elif kind == "chunk":  # damage a length/size field near the start
            pos = rng.randrange(8, min(40, len(data) - 4))
            data[pos : pos + 4] = struct.pack(">I", rng.choice([0, 1, 2**31 - 1, 2**32 - 1]))
        elif kind == "zero_run":
            pos = rng.randrange(len(data))
            data[pos : pos + rng.randint(1, 64)] = b"\x00" * 64
        else:  # the head of one format with the tail of another
            other = seeds[rng.choice(names)]
            data = data[: rng.randrange(len(data))] + other[rng.randrange(len(other)):]
        cases.append((f"{kind}_{name}", bytes(data)))
    return cases[:n]


def _outcome(fn, path: Path) -> str:
    """'ok' or 'DataError'; any other exception, or a DataError not naming the file, fails."""
    try:
        fn()
    except DataError as e:
        assert str(path) in str(e), f"DataError does not name the file: {e}"
        return "DataError"
    return "ok"


def _layouts(root: Path) -> dict[str, tuple[object, Path, Path]]:
    """One tiny data set per loader; returns (dataset, image file, label file) for each."""
    rng = np.random.default_rng(1)
    image = Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))
    label = Image.fromarray(rng.integers(0, 5, (24, 32), dtype=np.uint8))
    cam = root / "camvid"
    for d in ("train", "trainannot"):
        (cam / d).mkdir(parents=True)
    image.save(cam / "train" / "a.png")
    label.save(cam / "trainannot" / "a.png")
    city = root / "cityscapes"
    (city / "leftImg8bit/train/x").mkdir(parents=True)
    (city / "gtFine/train/x").mkdir(parents=True)
    image.save(city / "leftImg8bit/train/x/x_0_0_leftImg8bit.png")
    label.save(city / "gtFine/train/x/x_0_0_gtFine_labelTrainIds.png")
    fold = root / "folder"
    (fold / "images").mkdir(parents=True)
    (fold / "masks").mkdir(parents=True)
    image.save(fold / "images" / "a.png")
    label.save(fold / "masks" / "a.png")
    (fold / "classes.txt").write_text("a\nb\nc\nd\ne\n")
    return {
        "camvid": (CamVid(cam, "train"), cam / "train/a.png", cam / "trainannot/a.png"),
        "cityscapes": (Cityscapes(city, "train"),
                       city / "leftImg8bit/train/x/x_0_0_leftImg8bit.png",
                       city / "gtFine/train/x/x_0_0_gtFine_labelTrainIds.png"),
        "folder": (FolderDataset(fold), fold / "images/a.png", fold / "masks/a.png"),
    }


def test_fuzzed_files_decode_or_raise_data_error(tmp_path, one_thread, monkeypatch):
    from PIL import ImageFile

    # Work bounded by what is decoded (not by a wall-clock bound, which the machine's load
    # would decide): every pixel decoded is counted, per file.
    decoded = Counter()
    real_load = ImageFile.ImageFile.load

    def counting_load(image):
        decoded["pixels"] = max(decoded["pixels"], image.size[0] * image.size[1])
        return real_load(image)

    monkeypatch.setattr(ImageFile.ImageFile, "load", counting_load)
    layouts = _layouts(tmp_path / "data")
    seg = rtseg.Segmenter(rtseg.create_model("fpn_r18_bilinear", 5, aux=False),
                          [str(i) for i in range(5)], [(i, i, i) for i in range(5)], "cpu")
    target = tmp_path / "fuzz.png"
    counts: Counter = Counter()
    largest = 0
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for kind, data in mutants(N_FILES):
        target.write_bytes(data)
        decoded.clear()
        outcome = _outcome(lambda: read_image(target), target)
        counts["read_image " + outcome] += 1
        counts["read_label " + _outcome(lambda: read_label(target), target)] += 1
        for name, (ds, image_file, label_file) in layouts.items():
            for role, path in (("image", image_file), ("label", label_file)):
                saved = path.read_bytes()
                path.write_bytes(data)
                try:
                    counts[f"{name} {role} " + _outcome(lambda ds=ds: ds.load(0), path)] += 1
                finally:
                    path.write_bytes(saved)
        if outcome == "ok" and kind != "size_1x100000":  # the wide one costs ~1 s of conv
            out = tmp_path / "pred"
            counts["predict " + _outcome(
                lambda out=out: predict_path(seg, target, out, progress=False), target)] += 1
        largest = max(largest, decoded["pixels"])
        assert decoded["pixels"] <= rtseg.data.io.MAX_PIXELS, (kind, decoded["pixels"])
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) / 1024
    print(f"\nfuzzed {N_FILES} files; largest image decoded {largest:,} pixels; peak RSS grew "
          f"{grown_mb:.0f} MB; outcomes:")
    for key in sorted(counts):
        print(f"  {key}: {counts[key]}")
    assert grown_mb < 1024  # a 60 000² header never allocates its 10 GB
    assert largest == 100000  # the 1×100000 image was decoded; the bombs were not
    assert counts["read_image ok"] >= 8 and counts["read_image DataError"] >= N_FILES // 3
    assert counts["predict ok"] >= 8


def test_hostile_sizes_are_refused_before_decoding(tmp_path, monkeypatch):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_with_size(60000, 60000))
    with pytest.raises(DataError, match=r"bomb.png: image file too large to decode safely"):
        read_image(bomb)  # Pillow's own guard, at twice its limit
    bomb.write_bytes(_png_with_size(10000, 10000))
    with pytest.raises(DataError, match=r"bomb.png: image file too large to decode safely"):
        read_image(bomb)  # Pillow's warning above its limit, made an error
    monkeypatch.setattr(rtseg.data.io, "MAX_PIXELS", 1000)
    bomb.write_bytes(_png_with_size(40, 30))
    with pytest.raises(DataError, match=r"bomb.png: label file is 40×30 = 1,200 pixels, more "
                                         r"than the 1,000 rtseg decodes"):
        read_label(bomb)  # rtseg's own limit, from the header alone
    monkeypatch.undo()
    wide = tmp_path / "wide.png"
    Image.new("RGB", (100000, 1), (10, 20, 30)).save(wide)
    assert read_image(wide).shape == (3, 1, 100000)
    deep = tmp_path / "deep.png"
    Image.fromarray(np.full((2, 3), 0xABCD, np.uint16)).save(deep)
    assert read_image(deep).unique().tolist() == [0xAB]  # 16-bit grey scaled to 8 bits
    cmyk = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (4, 4), (0, 0, 0, 0)).save(cmyk)
    assert read_image(cmyk).float().mean() > 250  # no ink: white


def _payload_checkpoint(path: Path, marker: Path) -> None:
    """A checkpoint whose unpickling would create ``marker`` (via os.system)."""

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"model": {}, "config": {"model": "fpn_r18_bilinear"}, "x": Payload()}, path)


def test_bad_checkpoints_are_refused_with_the_file_named(tmp_path):
    ckpt = rtseg.train({"model": "fpn_r18_bilinear", "dataset": "synthetic",
                        "crop_size": [32, 48], "batch_size": 4, "iters": 1, "workers": 0,
                        "dataset_kwargs": {"size": [32, 48],
                                           "num_images": dict(train=4, val=1, test=1)}},
                       out_dir=str(tmp_path), run_name="r") / "last.pt"
    good = ckpt.read_bytes()
    cases = {}
    (tmp_path / "truncated.pt").write_bytes(good[: len(good) // 2])
    cases["truncated.pt"] = "cannot read checkpoint"
    (tmp_path / "random.pt").write_bytes(os.urandom(4096))
    cases["random.pt"] = "cannot read checkpoint"
    state = load_checkpoint(ckpt)
    save_atomic({**state, "config": {**state["config"], "model": "fanet18"}},
                tmp_path / "other_model.pt")
    cases["other_model.pt"] = "weights do not fit 'fanet18'"
    save_atomic({**state, "num_classes": 5}, tmp_path / "other_classes.pt")
    cases["other_classes.pt"] = "weights do not fit"
    save_atomic({**state, "format": 99}, tmp_path / "newer.pt")
    cases["newer.pt"] = "written by a newer rtseg .checkpoint format 99"
    marker = tmp_path / "payload-ran"
    _payload_checkpoint(tmp_path / "payload.pt", marker)
    cases["payload.pt"] = r"cannot read checkpoint: it holds a pickled object \(posix.system\)"
    for name, match in cases.items():
        with pytest.raises(CheckpointError, match=f"{name}: {match}"):
            rtseg.load(tmp_path / name, device="cpu")
    assert not marker.exists()  # the payload never ran
    data = rtseg.data.Synthetic("val", size=(32, 48), num_images=1)
    seg = rtseg.load(ckpt, device="cpu")
    seg.classes = seg.classes[:5]  # a segmenter for 5 classes against 8-class data
    with pytest.raises(UsageError, match="predicts 5 classes but the Synthetic data has 8"):
        rtseg.evaluate(seg, data=data)
