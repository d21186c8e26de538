"""The CamVid study script end to end on a tiny CamVid-layout fixture: trains, resumes, reports."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def load_study():
    spec = importlib.util.spec_from_file_location("study", ROOT / "scripts/study_camvid.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_camvid(root: Path) -> None:
    rng = np.random.default_rng(0)
    for split, n in {"train": 4, "val": 2, "test": 2}.items():
        for i in range(n):
            (root / split).mkdir(parents=True, exist_ok=True)
            (root / f"{split}annot").mkdir(parents=True, exist_ok=True)
            image = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
            label = rng.integers(0, 12, (48, 64)).astype(np.uint8)
            Image.fromarray(image).save(root / split / f"f{i}.png")
            Image.fromarray(label, mode="L").save(root / f"{split}annot" / f"f{i}.png")


def test_study_trains_resumes_and_reports(tmp_path: Path) -> None:
    make_camvid(tmp_path / "camvid")
    study = load_study()
    argv = ["--data", str(tmp_path / "camvid"), "--out", str(tmp_path / "study"),
            "--models", "fpn_r18_bilinear", "--iters", "2", "--crop", "32", "32", "--batch", "2",
            "--device", "cpu", "--workers", "0", "--bench-iters", "2", "--figure-frames", "0"]
    assert study.main(argv) == 0
    out = tmp_path / "study"
    run = out / "fpn_r18_bilinear_s0"
    assert (run / "best.pt").is_file() and (run / "metrics_test.json").is_file()
    table = (out / "results.md").read_text()
    assert "| fpn_r18_bilinear |" in table and "Pole" in table
    assert (out / "predictions.png").stat().st_size > 0
    first = json.loads((out / "results.json").read_text())
    assert first["latency"]["fpn_r18_bilinear"]["median_ms"] > 0
    # A second call finds the finished run and trains nothing: the checkpoint is untouched.
    stamp = (run / "best.pt").stat().st_mtime_ns
    assert study.main(argv + ["--no-bench"]) == 0
    assert (run / "best.pt").stat().st_mtime_ns == stamp
