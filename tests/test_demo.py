"""``rtseg demo`` says which phase it is in and about how long is left: tested with a fake clock
and stand-ins for training, evaluation and prediction (the estimate's arithmetic, not speed)."""

from pathlib import Path

import pytest

import rtseg
from rtseg import demo, predict
from rtseg.demo import demo_config, run_demo, time_left


def test_time_left_from_the_last_phase() -> None:
    # 600 s for 300 × 8 crops: 0.25 s a crop to train, a third of it to predict one image
    assert time_left(600, 2400, 200, 4) == pytest.approx(204 * 0.25 / 3)
    # evaluation measured: 100 s for 200 images, 4 more at 0.5 s
    assert time_left(100, 0, 200, 4, measured_inference=True) == pytest.approx(2.0)


def test_demo_reports_each_phase_with_the_time_left(tmp_path: Path, monkeypatch) -> None:
    now = [0.0]
    cfg = demo_config(None, "fpn_r18_bilinear", 300, tmp_path,
                      dataset_kwargs={"size": [32, 48], "num_images": {"test": 200}})
    run = tmp_path / "run"
    run.mkdir()

    def step(seconds, result):
        def fake(*args, **kwargs):
            now[0] += seconds
            return result
        return fake

    monkeypatch.setattr(rtseg.api, "train", step(600.0, run))  # 300 × 8 crops in 10 min
    monkeypatch.setattr(rtseg.api, "evaluate", step(100.0, {"miou": 0.5}))
    monkeypatch.setattr(rtseg.api, "load", step(0.0, None))
    monkeypatch.setattr(demo, "write_examples", step(0.0, None))
    monkeypatch.setattr(predict, "predict_path", step(2.0, ["overlay"]))
    lines: list[str] = []
    out = run_demo(cfg, report=lines.append, clock=lambda: now[0])
    assert lines == [
        "rtseg demo [1/3] training: 300 iterations of 8 crops (the bar shows this phase's "
        "time left)",
        "rtseg demo [2/3] evaluation of best.pt on 200 test images; 10.0 min so far, "
        "about 17 s left",
        "rtseg demo [3/3] prediction of 4 test images; 11.7 min so far, about 2 s left"]
    assert out["seconds"] == 702.0 and out["train_seconds"] == 600.0


def _folder_data_set(root: Path, splits: tuple[str, ...]) -> None:
    """A two-class folder data set (class 1: a bright square) with the given split folders."""
    import numpy as np
    from PIL import Image

    root.mkdir()
    (root / "classes.txt").write_text("ground\nsquare\n")
    rng = np.random.default_rng(0)
    for split in splits:
        (root / split / "images").mkdir(parents=True)
        (root / split / "masks").mkdir(parents=True)
        for i in range(4):
            image = rng.integers(0, 60, (40, 56, 3), dtype=np.uint8)
            mask = np.zeros((40, 56), np.uint8)
            y, x = rng.integers(0, 20, 2)
            image[y:y + 16, x:x + 24] += 150
            mask[y:y + 16, x:x + 24] = 1
            Image.fromarray(image).save(root / split / "images" / f"{split}{i}.png")
            Image.fromarray(mask).save(root / split / "masks" / f"{split}{i}.png")


@pytest.mark.parametrize("splits", [("train", "val", "test"), ("train", "val")])
def test_demo_runs_on_a_folder_data_set(tmp_path: Path, splits) -> None:
    # A user's own folder data set: trained, scored on test (or val without a test split),
    # and its images predicted, whatever their layout (no hard-coded folder names).
    _folder_data_set(tmp_path / "data", splits)
    cfg = demo_config(tmp_path / "data", "fpn_r18_bilinear", 2, tmp_path / "runs",
                      crop_size=[32, 48], batch_size=2, workers=0)
    lines: list[str] = []
    out = run_demo(cfg, examples=2, report=lines.append)
    scored = splits[-1]
    assert out["split"] == scored and out["metrics"]["images"] == 4
    assert (out["run"] / f"metrics_{scored}.json").is_file()
    assert f"on 4 {scored} images" in lines[1]
    assert sorted(p.name for p in out["overlays"]) == [f"{scored}0_overlay.png",
                                                       f"{scored}1_overlay.png"]
