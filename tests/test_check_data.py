"""Many files, one bad: training stops naming it; ``rtseg check-data`` lists every problem."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import rtseg
from rtseg.cli import main
from rtseg.data import DataError
from rtseg.data.check import check_dataset


def make_camvid(root: Path, n: int = 12) -> None:
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        (root / split).mkdir(parents=True)
        (root / f"{split}annot").mkdir(parents=True)
        for i in range(n if split == "train" else 2):
            Image.fromarray(rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)).save(
                root / split / f"f{i:02d}.png")
            Image.fromarray(rng.integers(0, 11, (32, 48), dtype=np.uint8)).save(
                root / f"{split}annot" / f"f{i:02d}.png")


@pytest.mark.parametrize("workers", [0, 1])
def test_a_corrupt_file_mid_training_stops_with_the_file_named(tmp_path, capsys, workers):
    root = tmp_path / "camvid"
    make_camvid(root)
    bad = root / "train" / "f07.png"
    bad.write_bytes(bad.read_bytes()[:100])  # truncated in the middle of the data set
    argv = ["train", "model=fpn_r18_bilinear", "dataset=camvid", f"data_root={root}",
            "crop_size=[32,48]", "batch_size=2", "iters=12", "eval_interval=100",
            f"workers={workers}", f"out_dir={tmp_path / 'runs'}", "run_name=r"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if ": error: " in line]
    assert len(errors) == 1 and "Traceback" not in err  # (the rest is the progress bar)
    assert errors[0].startswith(f"rtseg train: error: {bad}: unreadable or truncated image")


def test_check_data_reports_every_problem_at_once(tmp_path, capsys):
    root = tmp_path / "camvid"
    make_camvid(root)
    (root / "train" / "f03.png").write_bytes(b"garbage")
    (root / "trainannot" / "f05.png").unlink()
    Image.fromarray(np.full((32, 48), 40, np.uint8)).save(root / "trainannot" / "f08.png")
    Image.fromarray(np.zeros((16, 48), np.uint8)).save(root / "valannot" / "f01.png")
    Image.fromarray(np.zeros((32, 48), np.uint8)).save(root / "valannot" / "orphan.png")
    report = check_dataset(root, progress=False)
    problems = "\n".join(report["problems"])
    assert report["dataset"] == "camvid" and report["splits"] == {"train": 11, "val": 2}
    assert len(report["problems"]) == 5, problems
    assert f"{root / 'train' / 'f05.png'}: image without label" in problems
    assert f"{root / 'train' / 'f03.png'}: unreadable or truncated image" in problems
    assert f"{root / 'trainannot' / 'f08.png'}: label values 40 are outside" in problems
    assert "size mismatch" in problems and "orphan.png: label without image" in problems
    assert main(["check-data", str(root)]) == 1
    out = capsys.readouterr().out
    assert "5 problem(s) found" in out and "samples checked: train 11, val 2" in out
    clean = tmp_path / "clean"
    make_camvid(clean)
    assert main(["check-data", str(clean)]) == 0
    assert "no problems found" in capsys.readouterr().out
    assert main(["check-data", str(tmp_path / "nope")]) == 2
    with pytest.raises(DataError, match="image without label"):
        rtseg.data.CamVid(root, "train")  # training keeps failing at the first problem


def test_a_corrupt_file_with_loader_workers_exits_at_once_and_leaves_no_run(tmp_path):
    """With workers > 0 the error comes from a worker process: the run must still stop (its
    workers joined), print the error once, exit 2, and leave no run folder when nothing was
    saved. A separate process, so that a hang at exit shows as the timeout."""
    import os
    import subprocess
    import sys

    root = tmp_path / "camvid"
    make_camvid(root)
    bad = root / "train" / "f07.png"
    bad.write_bytes(bad.read_bytes()[:100])
    argv = [sys.executable, "-m", "rtseg", "train", "model=fpn_r18_bilinear", "dataset=camvid",
            f"data_root={root}", "crop_size=[32,48]", "batch_size=2", "iters=12",
            "eval_interval=100", "ckpt_interval=100", "workers=2",
            f"out_dir={tmp_path / 'runs'}", "run_name=r"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=240,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if ": error: " in line]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert errors[0].startswith(f"rtseg train: error: {bad}: unreadable or truncated image")
    assert not (tmp_path / "runs" / "r").exists()  # nothing saved: no run folder left
