"""studies/peers_camvid: the queue and its recipe (the probe's stage 1), two tiny real runs on a
CamVid-layout fixture (a peer with bilinear and with gum: stopped by the budget, resumed,
recorded once, never trained again), the report block between its markers, ``--stop-after``
starting nothing, a bad ``--models`` name, and the step timing the estimates read."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import torch
from test_study import make_camvid

from studies import common
from studies.common import run_study, save_records
from studies.peers_camvid import report as rep
from studies.peers_camvid import run as script

CLASSES = ["Sky", "Building", "Pole", "Road", "Sidewalk", "Tree", "SignSymbol", "Fence", "Car",
           "Pedestrian", "Bicyclist"]
TINY = ["--iters", "3", "--set", "crop_size=[32,32]", "batch_size=2", "eval_interval=3",
        "ckpt_interval=1", "workers=0", "warmup_iters=0", "ohem_min_kept=100", "log_interval=1"]
FIELDS = {"name", "model", "upsampler", "model_kwargs", "iters", "test_miou", "per_class_iou",
          "bf1", "bf2", "bf3", "biou", "train_hours", "s_per_step", "params", "gmac_360x480",
          "command"}


def fail(*args, **kwargs):
    raise AssertionError("a run was started")


def test_the_queue_and_its_recipe_are_stage_1() -> None:
    assert rep.NAMES == ["pidnet_s", "ddrnet23_slim", "bisenetv2", "stdc1_seg", "gain_r18",
                         "gain_df2", "fanet18", "gun", "ifa_r18", "pidnet_s+gum",
                         "ddrnet23_slim+gum", "bisenetv2+gum", "stdc1_seg+gum",
                         "pidnet_s+dysample", "ddrnet23_slim+dysample", "bisenetv2+dysample",
                         "stdc1_seg+dysample"]
    args = script.parse_args([])
    cfg = script.config_of(rep.JOBS[0], args)
    assert (cfg.model, cfg.model_kwargs, cfg.iters, cfg.batch_size, cfg.crop_size) == (
        "pidnet_s", {}, 5000, 8, (240, 320))
    assert (cfg.lr, cfg.warmup_iters, cfg.weight_decay, cfg.scale_range, cfg.flip) == (
        0.02, 200, 5e-4, (0.5, 2.0), True)
    assert (cfg.loss, cfg.ohem_thresh, cfg.ohem_min_kept, cfg.amp, cfg.eval_interval) == (
        "ohem", 0.7, 4800, True, 500)
    assert cfg.aux_weights is None and cfg.val_scale == 1.0 and cfg.seed == 0
    gain = script.config_of(rep.Job("gain_r18", "gain_r18", None), args)
    assert gain.model_kwargs == {"dilate": False, "context": False, "fuse3x3": False}
    dys = script.config_of(rep.JOBS[-1], script.parse_args(["--set", "lr=0.01"]))
    assert (dys.model, dys.model_kwargs, dys.lr) == ("stdc1_seg", {"upsampler": "dysample"}, 0.01)


def test_two_tiny_runs_stop_resume_and_are_recorded_once(tmp_path: Path, monkeypatch,
                                                         capsys) -> None:
    from rtseg.training.trainer import Trainer

    make_camvid(tmp_path / "camvid")
    docs, runs = tmp_path / "docs", tmp_path / "runs"
    argv = ["--data", str(tmp_path / "camvid"), "--out", str(runs), "--docs", str(docs),
            "--device", "cpu", "--models", "bisenetv2+gum", "bisenetv2", *TINY]
    step = Trainer._step

    def step_then_alarm(self, images, labels):
        out = step(self, images, labels)
        signal.raise_signal(signal.SIGALRM)  # the budget runs out after the first step
        return out

    monkeypatch.setattr(Trainer, "_step", step_then_alarm)
    assert script.main([*argv, "--stop-after", "600"]) == 0
    out = capsys.readouterr().out
    assert "budget spent (bisenetv2 stopped with its last.pt)" in out
    assert "0 runs of this queue recorded, 2 remain: bisenetv2, bisenetv2+gum" in out
    assert torch.load(runs / "bisenetv2" / "last.pt", weights_only=False)["iteration"] == 1
    assert not (docs / "results" / "peers_camvid.json").exists()
    # the next call resumes bisenetv2 from its last.pt, then trains bisenetv2+gum
    monkeypatch.setattr(Trainer, "_step", step)
    assert script.main(argv) == 0
    rows = [json.loads(line) for line in (runs / "bisenetv2" / "log.jsonl").read_text()
            .splitlines() if line.strip()]
    assert [r["iter"] for r in rows if r.get("kind") == "train"] == [1, 2, 3]
    records = json.loads((docs / "results" / "peers_camvid.json").read_text())
    assert [(r["name"], r["model"], r["upsampler"], r["model_kwargs"]) for r in records] == [
        ("bisenetv2", "bisenetv2", "bilinear", {}),
        ("bisenetv2+gum", "bisenetv2", "gum", {"upsampler": "gum"})]
    for r in records:
        assert set(r) >= FIELDS and r["iters"] == 3 and r["seed"] == 0
        assert 0 <= r["test_miou"] <= 100 and r["biou"] is not None
        assert sorted(r["per_class_iou"]) == sorted(CLASSES)
        assert r["train_hours"] > 0 and r["s_per_step"] > 0 and r["gmac_360x480"] > 1
        assert r["aux_weights"] == [1.0, 1.0, 1.0, 1.0]
        assert r["command"].startswith(f"python -m studies.peers_camvid.run --models {r['name']}"
                                       " --iters 3 --set 'crop_size=[32,32]'")
    assert records[1]["params"] > records[0]["params"]  # GUM's offset head
    block = (docs / "results.md").read_text()
    assert rep.BEGIN in block and rep.TITLE in block
    assert "| bisenetv2 | gum | 5.26 |" in block
    assert "| pidnet_s | bilinear | – | – | not run yet |" in block
    assert "| `bisenetv2+gum` − `bisenetv2` (bilinear) | " in block
    # a second call finds both recorded and trains nothing
    stamp = (runs / "bisenetv2+gum" / "best.pt").stat().st_mtime_ns
    monkeypatch.setattr(common, "train_then_test", fail)  # called by Budget.run
    assert script.main(argv) == 0
    assert json.loads((docs / "results" / "peers_camvid.json").read_text()) == records
    assert (runs / "bisenetv2+gum" / "best.pt").stat().st_mtime_ns == stamp


def hand_made(name: str, model: str, up: str | None, miou: float, bf2: float,
              pole: float | None) -> dict:
    return {"name": name, "model": model, "upsampler": up, "model_kwargs": {}, "seed": 0,
            "iters": 5000, "test_miou": miou, "bf1": 30.0, "bf2": bf2, "bf3": 50.0, "biou": 20.0,
            "per_class_iou": {c: (pole if c == "Pole" else miou) for c in CLASSES},
            "train_hours": 1.5, "s_per_step": 1.08, "params": 5_212_375, "gmac_360x480": 8.1,
            "command": "x"}


def test_report_only_rewrites_only_the_block(tmp_path: Path, capsys) -> None:
    docs = tmp_path / "docs"
    save_records(docs / "results" / "peers_camvid.json", [
        hand_made("bisenetv2+gum", "bisenetv2", "gum", 52.5, 39.0, None),
        hand_made("bisenetv2", "bisenetv2", "bilinear", 50.0, 40.0, 10.0)])
    before, after = "# Results\n\nsome text\n\n", "\n\n## Later section\n\nkept as it is\n"
    (docs / "results.md").write_text(before + rep.BEGIN + "\nold block\n" + rep.END + after)
    assert script.main(["--docs", str(docs), "--report-only"]) == 0
    text = (docs / "results.md").read_text()
    assert text.startswith(before + rep.BEGIN) and text.endswith(rep.END + after)
    block = text[text.index(rep.BEGIN):text.index(rep.END)]
    assert "old block" not in block and rep.TITLE in block and "Boundary IoU" in block
    assert "| bisenetv2 | bilinear | 5.21 | 8.1 | 50.0 | 40.0 | 20.0 | 10.0 | 50.0 | 50.0 | " \
           "50.0 | 1.50 h (1.08 s/step) |" in block
    assert "| bisenetv2 | gum | 5.21 | 8.1 | 52.5 | 39.0 | 20.0 | – |" in block
    assert block.count("not run yet") == 15 + 7  # 15 table rows, 7 difference rows
    row = next(line for line in block.splitlines() if line.startswith("| `bisenetv2+gum`"))
    assert row.startswith("| `bisenetv2+gum` − `bisenetv2` (bilinear) | +2.5 (1 paired seed: "
                          "no interval) | -1.0 (1 paired seed: no interval) | +0.0 (1 paired "
                          "seed: no interval) | – | s0 +2.5 |")
    assert "shows anything" in block.replace("\n", " ")
    assert rep.TITLE in capsys.readouterr().out
    # a page without the markers gets the section appended, its text untouched
    (docs / "results.md").write_text("# Only this\n")
    assert script.main(["--docs", str(docs), "--report-only"]) == 0
    text = (docs / "results.md").read_text()
    assert text.startswith("# Only this\n\n" + rep.BEGIN + "\n" + rep.TITLE)
    assert text.endswith(rep.END + "\n")


def test_stop_after_starts_nothing_that_does_not_fit(tmp_path: Path, monkeypatch,
                                                     capsys) -> None:
    monkeypatch.setattr(common, "train_then_test", fail)  # called by Budget.run
    argv = ["--out", str(tmp_path / "runs"), "--docs", str(tmp_path / "docs")]
    assert script.main([*argv, "--stop-after", "0"]) == 0
    out = capsys.readouterr().out
    assert ("budget spent after 0.0 min: 0 runs of this queue recorded, 17 remain: pidnet_s, "
            "ddrnet23_slim, bisenetv2, stdc1_seg, gain_r18,") in out
    assert out.count("Re-run the same command") == 1
    assert not (tmp_path / "docs" / "results" / "peers_camvid.json").exists()
    # 5000 steps at the assumed 1 s/step + 5 min do not fit in an hour
    assert script.main([*argv, "--stop-after", "60"]) == 0
    assert "next run (pidnet_s, about 88 min) does not fit" in capsys.readouterr().out


def test_a_bad_models_name_is_one_line(capsys) -> None:
    assert run_study(lambda: script.main(["--models", "bisenetv2", "bisenetv3"])) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "unknown run 'bisenetv3' in --models" in err and "bisenetv2+dysample" in err


@pytest.mark.filterwarnings("ignore")
def test_time_step_feeds_the_estimates(tmp_path: Path, capsys) -> None:
    from studies.peers_camvid.timing import time_step

    args = script.parse_args(["--out", str(tmp_path), "--models", "bisenetv2+gum"])
    jobs = script.selected(args)
    res = time_step(jobs, args, size=(32, 32), batch=2, steps=1)
    assert list(res) == ["bisenetv2+gum"] and res["bisenetv2+gum"] > 0
    assert "h for 1 runs" in capsys.readouterr().out
    measured = script.measured_steps(args)
    assert measured == res
    est = script.estimate_minutes(jobs[0], 600, [], measured)
    assert est == pytest.approx(600 * res["bisenetv2+gum"] / 60 + script.EVAL_MINUTES)
    # a recorded run of the same network wins over the measurement
    recorded = [hand_made("bisenetv2", "bisenetv2", "bilinear", 50.0, 40.0, 10.0)]
    assert script.estimate_minutes(jobs[0], 600, recorded, measured) == pytest.approx(
        600 * 1.08 / 60 + script.EVAL_MINUTES)
