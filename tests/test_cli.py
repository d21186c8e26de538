"""The command line: every expected user error is one line on stderr and exit status 2."""

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from rtseg.cli import main

TINY = ["model=fpn_r18_bilinear", "dataset=synthetic", "crop_size=[32,48]",
        "dataset_kwargs={size: [32, 48], num_images: {train: 8, val: 2, test: 2}}",
        "batch_size=4", "iters=2", "eval_interval=2", "ckpt_interval=2", "workers=0"]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    assert main(["train", *TINY, f"out_dir={out}", "run_name=tiny"]) == 0
    return out / "tiny" / "best.pt"


def _bad_inputs(tmp_path, ckpt):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00" * 64)
    text = tmp_path / "notes.txt"
    text.write_text("x")
    (tmp_path / "bad.mp4").write_bytes(b"\x00" * 64)
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("iters: [1,\n")
    out = str(tmp_path / "runs")
    return {
        # train: unknown key/model, wrong types, nonsense values, missing files
        "unknown key": ["train", "itres=5", f"out_dir={out}"],
        "unknown model": ["train", "model=nosuch", f"out_dir={out}"],
        "negative iters": ["train", "iters=-1", f"out_dir={out}"],
        "zero batch": ["train", "batch_size=0", f"out_dir={out}"],
        "nan lr": ["train", "lr=.nan", f"out_dir={out}"],
        "crop not a pair": ["train", "crop_size=abc", f"out_dir={out}"],
        "not key=value": ["train", "iters", f"out_dir={out}"],
        "missing config": ["train", "--config", str(tmp_path / "none.yaml")],
        "broken config": ["train", "--config", str(bad_yaml)],
        "resume non-run": ["train", "--resume", str(tmp_path)],
        "unknown option": ["train", "--iters", "3"],
        "missing data": ["train", "dataset=camvid", f"data_root={tmp_path / 'nope'}",
                         f"out_dir={out}"],
        "unknown model option": ["train", "model_kwargs={foo: 1}", f"out_dir={out}"],
        # eval / predict
        "eval missing ckpt": ["eval", str(tmp_path / "none.pt")],
        "eval garbage ckpt": ["eval", str(garbage)],
        "eval wrong type": ["eval", str(ckpt), "--tolerance", "x"],
        "eval bad device": ["eval", str(ckpt), "--device", "tpu"],
        "eval bad data": ["eval", str(ckpt), "--data-root", str(tmp_path)],
        "eval slide without crop": ["eval", str(ckpt), "--mode", "slide"],
        "eval zero scale": ["eval", str(ckpt), "--scales", "0"],
        "eval zero crop": ["eval", str(ckpt), "--mode", "slide", "--crop", "0", "0"],
        "eval backend for a checkpoint": ["eval", str(ckpt), "--backend", "onnxruntime"],
        "train freeze not a string": ["train", "freeze=[backbone]", f"out_dir={out}"],
        "resume another model": ["train", "--resume", str(ckpt.parent), "model=fanet18"],
        "predict broken video out": ["predict", str(ckpt), str(tmp_path / "bad.mp4"), "--out",
                                     str(tmp_path / "o.mp4")],
        "predict missing input": ["predict", str(ckpt), str(tmp_path / "none.png")],
        "predict text input": ["predict", str(ckpt), str(text)],
        "predict slide without crop": ["predict", str(ckpt), str(text), "--mode", "slide"],
        "predict stride without slide": ["predict", str(ckpt), str(text), "--stride", "8", "8"],
        "demo missing data": ["demo", "--data", str(tmp_path / "nope")],
        # bench / export / info
        "bench unknown model": ["bench", "nosuch"],
        "export unknown model": ["export", "nosuch", "--onnx", str(tmp_path / "m.onnx")],
        "info unknown model": ["info", "--models", "nosuch"],
        "no command": [],
    }


def test_every_bad_invocation_is_one_line_and_status_2(ckpt, tmp_path, capsys):
    for what, argv in _bad_inputs(tmp_path, ckpt).items():
        try:
            status = main(argv)
        except SystemExit as e:  # argparse's own errors
            status = e.code
        err = capsys.readouterr().err.strip()
        assert status == 2, (what, status, err)
        assert "Traceback" not in err, what
        assert len(err.splitlines()) == 1, (what, err)
        assert ": error: " in err and err.startswith("rtseg"), (what, err)
    assert not (tmp_path / "runs").exists()  # no run folder for an invalid configuration


def test_subprocess_has_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "rtseg", "train", "iters=-1",
                           f"out_dir={tmp_path}"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "rtseg train: error: iters must be >= 1, got -1"


def test_predict_honours_its_options(ckpt, tmp_path):
    import rtseg

    image = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "x.png")
    args = ["--mode", "slide", "--crop", "32", "32", "--stride", "8", "8", "--flip",
            "--scales", "0.75", "1.0"]
    assert main(["predict", str(ckpt), str(tmp_path / "x.png"), "--out", str(tmp_path / "p"),
                 "--device", "cpu", *args]) == 0
    written = np.asarray(Image.open(tmp_path / "p" / "x_label.png"))
    seg = rtseg.load(ckpt, device="cpu")
    expected = seg(image, mode="slide", crop=(32, 32), stride=(8, 8), flip=True,
                   scales=[0.75, 1.0])
    assert np.array_equal(written, expected)
    assert np.array_equal(written, seg(tmp_path / "x.png", mode="slide", crop=(32, 32),
                                       stride=(8, 8), flip=True, scales=[0.75, 1.0]))
