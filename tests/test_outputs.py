"""Never destroy a user's file, never run out of memory blindly (issue 34): outputs checked
against inputs, atomic writes, memory-aware prediction and export, device checks everywhere,
run folders as checkpoints, the CLI's plan, version and exit statuses."""

from __future__ import annotations

import hashlib
import os
import re

import numpy as np
import pytest
import torch
from PIL import Image

import rtseg
from rtseg.cli import main
from rtseg.errors import UsageError
from rtseg.inference.memory import PassCost, parse_size
from rtseg.outputs import atomic_path, check_output
from rtseg.training.checkpoint import save_atomic
from rtseg.training.config import make_config
from rtseg.training.trainer import run_training as train

TINY = dict(model="fpn_r18_bilinear", dataset="synthetic", crop_size=[32, 48],
            dataset_kwargs={"size": [32, 48], "num_images": dict(train=8, val=2, test=2)},
            batch_size=4,
            iters=2, eval_interval=2, ckpt_interval=2, workers=0)
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    torch.set_num_threads(1)
    return train(make_config({**TINY, "out_dir": str(tmp_path_factory.mktemp("runs")),
                              "run_name": "tiny"}))


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _one_line_error(capsys, command: str) -> str:
    err = capsys.readouterr().err.strip()
    last = err.splitlines()[-1]  # before it at most a cleared progress bar
    assert "Traceback" not in err and last.startswith(f"rtseg {command}: error: "), err
    return last


def _image(path, h=32, w=48, seed=0):
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)) \
        .save(path)
    return path


def test_export_refuses_to_overwrite_its_input(run, tmp_path, capsys):
    ckpt = run / "best.pt"
    before = _digest(ckpt)
    for flag in ("--onnx", "--torchscript", "--exported"):
        assert main(["export", str(ckpt), flag, str(ckpt), "--size", "32", "48"]) == 2
        assert "names the input" in _one_line_error(capsys, "export")
    link = tmp_path / "link.pt"
    link.symlink_to(ckpt)  # the same file through a link
    assert main(["export", str(ckpt), "--onnx", str(link), "--size", "32", "48"]) == 2
    assert "names the input" in _one_line_error(capsys, "export")
    # an existing file of another kind: the run's last.pt as --onnx or --torchscript
    for flag in ("--onnx", "--torchscript"):
        assert main(["export", str(run), flag, str(run / "last.pt"), "--size", "32", "48"]) == 2
        assert "exists as another kind of file" in _one_line_error(capsys, "export")
    assert main(["export", str(run), "--onnx", str(tmp_path / "a.onnx"), "--torchscript",
                 str(tmp_path / "a.onnx")]) == 2
    assert "also the output of --onnx" in _one_line_error(capsys, "export")
    assert _digest(ckpt) == before and not list(run.glob(".*tmp*"))


def test_predict_refuses_to_overwrite_its_inputs(run, tmp_path, capsys):
    from test_predict import _write_video

    ckpt = run / "best.pt"
    image = _image(tmp_path / "x.png")
    folder = tmp_path / "imgs"
    folder.mkdir()
    _image(folder / "a.png")
    _image(folder / "a_label.png", seed=1)  # an input a prediction into the folder would replace
    video = tmp_path / "clip.mp4"
    _write_video(video, [np.zeros((32, 48, 3), np.uint8)] * 2)
    inputs = [image, folder / "a.png", folder / "a_label.png", video, ckpt]
    before = [_digest(p) for p in inputs]
    cases = [[str(image), "--out", str(image)], [str(folder), "--out", str(folder)],
             [str(video), "--out", str(video)], [str(image), "--out", str(ckpt)]]
    for argv in cases:
        assert main(["predict", str(ckpt), *argv, "--device", "cpu"]) == 2, argv
        assert "names the" in _one_line_error(capsys, "predict")
    assert [_digest(p) for p in inputs] == before
    # with --overwrite the video is replaced by its overlay video, written whole then renamed
    assert main(["predict", str(ckpt), str(video), "--out", str(video), "--overwrite",
                 "--device", "cpu"]) == 0
    assert _digest(video) != before[3] and not list(tmp_path.glob(".*"))


def test_predict_writes_a_legend_and_takes_a_run_folder(run, tmp_path):
    image = _image(tmp_path / "x.png")
    assert main(["predict", str(run), str(image), "--out", str(tmp_path / "p"),
                 "--device", "cpu"]) == 0
    legend = Image.open(tmp_path / "p" / "legend.png")
    assert legend.height >= 8 * 16  # a row per class
    seg = rtseg.load(run, device="cpu")  # the folder stands for its best.pt
    assert np.array_equal(np.asarray(Image.open(tmp_path / "p" / "x_label.png")), seg(image))
    out = tmp_path / "m.json"
    assert main(["eval", str(run), "--split", "test", "--json", str(out), "--device", "cpu"]) == 0
    assert out.is_file()


def test_failed_prediction_leaves_no_file_or_folder(run, tmp_path, capsys):
    import av

    empty = tmp_path / "empty.mp4"  # a video without frames
    with av.open(str(empty), "w") as container:
        stream = container.add_stream("mpeg4", rate=5)
        stream.width, stream.height, stream.pix_fmt = 48, 32, "yuv420p"
        container.start_encoding()
    for out in (tmp_path / "new" / "o.mp4", tmp_path / "folder"):
        assert main(["predict", str(run), str(empty), "--out", str(out), "--device",
                     "cpu"]) == 2
        assert "no frames" in _one_line_error(capsys, "predict")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.mp4"]


def test_too_large_whole_image_switches_to_windows_or_is_refused(run, tmp_path, capsys):
    h, w = 192, 320
    image = _image(tmp_path / "x.png", h, w)
    seg = rtseg.load(run, device="cpu")
    cost = PassCost(seg)
    whole, slide = cost.whole(h, w), cost.slide(h, w, (64, 64))
    assert slide < whole
    limit = (slide + whole) // 2
    assert main(["predict", str(run), str(image), "--out", str(tmp_path / "p"),
                 "--max-memory", str(limit), "--device", "cpu"]) == 0
    note = capsys.readouterr().err
    found = re.search(r"note: .*needs about .* predicting in sliding windows of (\d+)×(\d+)", note)
    assert found, note
    crop = (int(found.group(1)), int(found.group(2)))
    assert cost.slide(h, w, crop) <= limit < cost.whole(h, w)
    expected = seg(image, mode="slide", crop=crop, stride=crop)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "p" / "x_label.png")), expected)
    # below what even the smallest windows need: refused before any work, naming the option
    assert main(["predict", str(run), str(image), "--out", str(tmp_path / "q"),
                 "--max-memory", "64K", "--device", "cpu"]) == 2
    assert "--max-memory" in _one_line_error(capsys, "predict")
    assert not (tmp_path / "q").exists()
    assert main(["export", str(run), "--onnx", str(tmp_path / "m.onnx"), "--size", "4000",
                 "8000", "--max-memory", "1G"]) == 2
    assert "--size 4000 8000" in _one_line_error(capsys, "export")
    assert not (tmp_path / "m.onnx").exists()


def test_memory_sizes_and_estimates():
    assert parse_size("2G") == 2 << 30 and parse_size("1.5 MB") == 3 << 19
    assert parse_size("800MiB") == 800 << 20 and parse_size("1000") == 1000
    for bad in ("", "two", "-1G", "0"):
        with pytest.raises(UsageError):
            parse_size(bad)
    seg = rtseg.Segmenter(rtseg.create_model("fpn_r18_bilinear", 4, aux=False), "abcd",
                          [(0, 0, 0)] * 4, "cpu")
    cost = PassCost(seg)
    small, large = cost.whole(64, 64), cost.whole(640, 640)
    assert small > 0 and large >= 100 * small * 0.99  # grows at least with the pixels


def test_device_cuda_without_cuda_is_one_line_in_every_command(run, tmp_path, capsys,
                                                               monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    image = _image(tmp_path / "x.png")
    out = str(tmp_path / "runs")
    commands = {
        "train": ["train", *[f"{k}={v}" for k, v in TINY.items()], "device=cuda",
                  f"out_dir={out}"],
        "eval": ["eval", str(run), "--device", "cuda"],
        "predict": ["predict", str(run), str(image), "--out", str(tmp_path / "p"), "--device",
                    "cuda"],
        "bench": ["bench", "fpn_r18_bilinear", "--device", "cuda"],
        "export": ["export", str(run), "--onnx", str(tmp_path / "m.onnx"), "--device", "cuda"],
    }
    for command, argv in commands.items():
        assert main([a.replace(" ", "") for a in argv]) == 2, command
        assert "CUDA is not available" in _one_line_error(capsys, command)
    assert not (tmp_path / "runs").exists() and not (tmp_path / "m.onnx").exists()


def test_eval_of_an_exported_file_asks_for_its_data_in_cli_terms(run, tmp_path, capsys):
    onnx = tmp_path / "m.onnx"
    rtseg.export(run, onnx, size=(32, 48))
    capsys.readouterr()
    assert main(["eval", str(onnx)]) == 2
    assert "give --data-root PATH" in _one_line_error(capsys, "eval")
    assert main(["eval", str(onnx), "--dataset", "synthetic", "--limit", "2"]) == 0
    assert re.search(r"mIoU \d+\.\d\d %", capsys.readouterr().out)


def test_train_prints_its_plan_and_version(tmp_path, capsys):
    assert main(["train", *[f"{k}={v}" for k, v in TINY.items()], f"out_dir={tmp_path}",
                 "run_name=r"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert "no --config" in first and "fpn_r18_bilinear on synthetic" in first
    assert "2 iterations" in first
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"rtseg {rtseg.__version__}"


def test_bench_exits_non_zero_when_nothing_was_timed(monkeypatch, capsys):
    from rtseg.cli import bench

    monkeypatch.setattr(bench, "run_benchmark", lambda **kw: {
        "settings": {}, "reference": None,
        "results": [{"name": "fpn_r18_bilinear", "error": "out of memory"}]})
    monkeypatch.setattr(bench, "format_report", lambda result: "report")
    assert main(["bench", "fpn_r18_bilinear"]) == 1
    assert "nothing could be timed (out of memory)" in capsys.readouterr().err


def test_outputs_get_the_umask_mode_and_appear_whole(tmp_path):
    saved = os.umask(0o027)
    try:
        save_atomic({"model": {}, "config": {"model": "m"}, "num_classes": 1}, tmp_path / "c.pt")
        assert (tmp_path / "c.pt").stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(saved)
    target = tmp_path / "out.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("failed mid-write")
    assert target.read_text() == "old" and sorted(tmp_path.iterdir()) == [tmp_path / "c.pt",
                                                                          target]
    with pytest.raises(UsageError, match="is a folder"):
        check_output(tmp_path, "--json", [], "json")
