"""The studies and tools end to end on tiny fixtures: the CamVid study trains, resumes and
reports; the probe, the deploy study, the ONNX profiler and the int8 bisection run. The paired
difference cells of the reports on hand-made runs, and those of docs/results.md from its own
by-seed values."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from studies import common, stats
from studies.camvid_study import run as study
from tools import int8_bisect, profile_onnx

ROOT = Path(__file__).resolve().parents[1]


def export_tiny(model: str, path: Path) -> Path:
    """``rtseg.export`` of a randomly initialised 4-class ``model`` at 32×48."""
    import rtseg

    return rtseg.export(model, path, num_classes=4, size=(32, 48)).onnx


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


def test_study_trains_resumes_and_reports(tmp_path: Path, monkeypatch) -> None:
    make_camvid(tmp_path / "camvid")
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
    # Neither --no-bench nor --report-only re-times: both keep the study run's timings.
    monkeypatch.setattr(study, "latency",
                        lambda *a, **k: pytest.fail("a report that trains nothing must not time"))
    assert study.main(argv + ["--report-only"]) == 0
    again = json.loads((out / "results.json").read_text())
    assert again["latency"] == first["latency"]
    assert f"| {first['latency']['fpn_r18_bilinear']['median_ms']:.1f} |" in \
        (out / "results.md").read_text()


def test_paired_cell_gives_mean_interval_and_word_of_the_same_seed_differences() -> None:
    cell = stats.paired_cell

    def runs(*values: float, seeds: tuple[int, ...] = (0, 1, 2)) -> list[dict]:
        return [{"miou": v, "seed": s} for v, s in zip(values, seeds, strict=True)]

    base = runs(0.30, 0.40, 0.35)
    # differences +2, +3, +4 points: mean 3, sd 1, half-width t_{0.975, 2} · 1 / √3 = 2.484
    assert cell(runs(0.32, 0.43, 0.39), base, "miou") == "+3.0 (+0.5 to +5.5) ahead"
    assert cell(runs(0.28, 0.37, 0.31), base, "miou") == "-3.0 (-5.5 to -0.5) behind"
    # +1, +2, +3: the interval (-0.5, +4.5) spans 0, though every seed is ahead
    assert cell(runs(0.31, 0.42, 0.38), base, "miou") == "+2.0 (-0.5 to +4.5) not shown"
    # -0.1, 0, +0.1: a tight interval around 0 is still "not shown": no margin was fixed in
    # advance, so nothing is ever called "level"
    assert cell(runs(0.299, 0.40, 0.351), base, "miou") == "+0.0 (-0.2 to +0.2) not shown"
    # two seeds, +2 and +3: t_{0.975, 1} = 12.706, half-width 12.706 · 0.5 = 6.4
    assert cell(runs(0.32, 0.43, seeds=(0, 1)), base, "miou") == "+2.5 (-3.9 to +8.9) not shown"
    # same difference with both seeds: the interval is the point, which excludes 0
    assert cell(runs(0.29, 0.39, seeds=(0, 1)), base, "miou") == "-1.0 (-1.0 to -1.0) behind"
    # the seeds are paired by number, not by position; seed 7 has no partner and is left out
    assert cell(runs(0.39, 0.32, 0.5, seeds=(2, 0, 7)), base, "miou") == \
        "+3.0 (-9.7 to +15.7) not shown"
    assert stats.by_seed(runs(0.39, 0.32, 0.5, seeds=(2, 0, 7)), base, "miou") == \
        "s2 +4.0, s0 +2.0"
    assert cell(runs(0.20, seeds=(1,)), base, "miou") == "-20.0 (1 paired seed: no interval)"
    assert cell(runs(0.20, seeds=(5,)), base, "miou") == "no paired seeds"
    with pytest.raises(ValueError, match="repeat a seed"):
        cell(runs(0.2, 0.3, seeds=(0, 0)), base, "miou")
    assert not hasattr(common, "verdict")  # the spread rule is gone


def test_difference_table_puts_paired_cells_and_seed_differences_in_columns() -> None:
    base = [{"miou": 0.30, "mbf": 0.20, "seed": 0}, {"miou": 0.40, "mbf": 0.20, "seed": 1},
            {"miou": 0.35, "mbf": 0.20, "seed": 2}]
    gum = [{"miou": 0.32, "mbf": 0.25, "seed": 0}, {"miou": 0.43, "mbf": 0.25, "seed": 1},
           {"miou": 0.39, "mbf": 0.25, "seed": 2}]
    assert stats.difference_table(
        [("gum", gum, base)],
        [("Δ mIoU (95 % CI)", "miou", "paired"), ("by seed", "miou", "by_seed"),
         ("Δ BF (95 % CI)", "mbf", "paired")]) == [
        "| run | Δ mIoU (95 % CI) | by seed | Δ BF (95 % CI) |", "|---|---|---|---|",
        "| gum | +3.0 (+0.5 to +5.5) ahead | s0 +2.0, s1 +3.0, s2 +4.0 | "
        "+5.0 (+5.0 to +5.0) ahead |"]
    with pytest.raises(KeyError):
        stats.difference_table([("gum", gum, base)], [("Δ", "miou", "verdict")])


def test_report_lists_seeds_and_differences_to_bilinear() -> None:
    classes = ["Sky", "Pole", "SignSymbol", "Pedestrian", "Bicyclist"]

    def run(miou: float, pole: float, seed: int) -> dict:
        return {"miou": miou, "mbf": miou / 2, "iou": [0.9, pole, 0.0, 0.1, 0.2],
                "classes": classes, "seed": seed}

    results = {"fpn_r18_bilinear": [run(0.30, 0.10, 0), run(0.34, 0.20, 1)],
               "fpn_r18_gai": [run(0.40, 0.30, 0), run(0.42, 0.40, 1)],
               "fpn_r18_gum": [run(0.29, 0.30, 1)],  # seed 0 unfinished: pairs with seed 1
               "gain_r18": [run(0.35, 0.0, 0)]}
    args = study.parse_args(["--seeds", "0", "1", "--iters", "10"])
    text = study.report(results, {"fpn_r18_gai": {"median_ms": 12.34}}, args)
    assert "| fpn_r18_bilinear | 2 | 32.0 (30.0–34.0) | 16.0 (15.0–17.0) | 15.0 (10.0–20.0) |" \
        in text
    assert "| gain_r18 | 1 | 35.0 |" in text
    # +10 and +8: mean 9, half-width 12.706 · 1; +5 and +4: mean 4.5, half-width 12.706 · 0.5
    assert ("| gai | +9.0 (-3.7 to +21.7) not shown | s0 +10.0, s1 +8.0 | "
            "+4.5 (-1.9 to +10.9) not shown | s0 +5.0, s1 +4.0 |") in text
    assert ("| gum | -5.0 (1 paired seed: no interval) | s1 -5.0 | "
            "-2.5 (1 paired seed: no interval) | s1 -2.5 |") in text
    assert "Δ mIoU (95 % CI)" in text and "spread" not in text.split("Difference to")[1]
    assert "| latency (ms) |" in text and "| 12.3 |" in text
    untimed = study.report(results, {}, args)  # --no-bench: no empty latency column
    assert "latency" not in untimed
    assert "| gain_r18 | 1 | 35.0 | 17.5 | 0.0 | 0.0 | 10.0 | 20.0 |\n" in untimed


def test_results_page_intervals_follow_from_its_by_seed_values() -> None:
    """Every "mean (low to high) word" cell of docs/results.md is recomputed from the "by seed"
    cell beside it: the page's readings rest on nothing but its own tables."""
    number = lambda text: float(text.replace("−", "-"))  # noqa: E731
    cell = re.compile(r"([+−]\d+\.\d\d) \(([+−]\d+\.\d) to ([+−]\d+\.\d)\) "
                      r"(ahead|behind|not shown)")
    found = []
    for line in (ROOT / "docs" / "results.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")] if line.startswith("| ") else []
        for k, text in enumerate(cells):
            if m := cell.fullmatch(text):
                diffs = [number(pair.split()[1]) for pair in cells[k + 1].split(", ")]
                res = stats.paired_difference(diffs, [0.0] * len(diffs))
                assert number(m[1]) == pytest.approx(res.mean, abs=0.0051), text
                assert (number(m[2]), number(m[3])) == pytest.approx(res.interval, abs=0.051), text
                assert m[4] == stats.verdict_words(res.interval), text
                found.append((cells[0], m[4]))
    assert len(found) == 32  # tables 1 and 2, the faithful networks, the probe: mIoU and BF
    assert ("frozen gum", "ahead") in found and ("fast_attention", "behind") in found


def test_faithful_seeds_limit_the_faithful_networks_only(tmp_path: Path) -> None:
    make_camvid(tmp_path / "camvid")
    out = tmp_path / "study"
    for name, miou in {"gain_r18_s0": 0.3, "gain_r18_s1": 0.5, "fpn_r18_gum_s0": 0.2,
                       "fpn_r18_gum_s1": 0.4}.items():
        (out / name).mkdir(parents=True)
        metrics = {"miou": miou, "mbf": 0.1, "iou": [0.0] * 11,
                   "classes": study.THIN + [f"c{k}" for k in range(7)]}
        (out / name / "metrics_test.json").write_text(json.dumps(metrics))
    argv = ["--data", str(tmp_path / "camvid"), "--out", str(out), "--report-only",
            "--no-bench", "--models", "fpn_r18_gum", "gain_r18", "--seeds", "0", "1",
            "--faithful-seeds", "0", "--device", "cpu", "--figure-frames", "0"]
    assert study.main(argv) == 0
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert [r["miou"] for r in runs["fpn_r18_gum"]] == [0.2, 0.4]
    assert [r["miou"] for r in runs["gain_r18"]] == [0.3]


def test_probe_two_stages_on_a_frozen_backbone(tmp_path: Path) -> None:
    import torch

    from rtseg.training.checkpoint import load_checkpoint

    make_camvid(tmp_path / "camvid")
    from studies.probe import run as probe

    out = tmp_path / "probe"
    argv = ["--data", str(tmp_path / "camvid"), "--out", str(out), "--stage1-iters", "2",
            "--iters", "2", "--seeds", "0", "--upsamplers", "bilinear", "gai", "--crop", "32",
            "32", "--batch", "2", "--workers", "0", "--device", "cpu", "--bench-iters", "2"]
    assert probe.main(argv) == 0
    stage1 = load_checkpoint(out / "stage1_fpn_r18_bilinear" / "best.pt")["model"]
    frozen = load_checkpoint(out / "frozen_gai_s0" / "last.pt")["model"]
    tuned = load_checkpoint(out / "finetune_gai_s0" / "last.pt")["model"]
    backbone = [k for k in frozen if k.startswith("backbone.")]
    assert all(torch.equal(frozen[k], stage1[k]) for k in backbone)  # frozen: bit-identical
    assert any(not torch.equal(tuned[k], stage1[k]) for k in backbone)  # fine-tuned: moved
    copied = json.loads((out / "frozen_gai_s0" / "init_from.json").read_text())["copied"]
    assert copied and all(k.startswith("backbone.") for k in copied)
    metrics = json.loads((out / "frozen_gai_s0" / "metrics_test.json").read_text())
    assert set(metrics["mbf_at"]) == {"1", "2", "3"}
    text = (out / "results.md").read_text()
    for row in ("| stage 1 (whole network, bilinear) | 1 |", "| frozen bilinear | 1 |",
                "| frozen gai | 1 |", "| finetune bilinear | 1 |", "| finetune gai | 1 |"):
        assert row in text, row
    for run in ("frozen gai", "finetune gai"):  # the difference rows, one seed: no interval
        assert re.search(rf"\| {run} \| [+-]\d+\.\d \(1 paired seed: no interval\) \| s0 [+-]",
                         text), run
    assert (out / "boundary_crops.png").stat().st_size > 0
    # a second seed for the frozen runs only: seed 0 is reused, nothing is fine-tuned on seed 1
    assert probe.main(argv + ["--seeds", "0", "1", "--finetune-seeds", "0", "--no-bench"]) == 0
    assert (out / "frozen_gai_s1" / "metrics_test.json").is_file()
    assert not (out / "finetune_bilinear_s1").exists()
    text = (out / "results.md").read_text()
    assert "| frozen gai | 2 |" in text and "| finetune gai | 1 |" in text
    assert re.search(r"\| frozen gai \| [+-]\d+\.\d \([+-]\d+\.\d to [+-]\d+\.\d\) "
                     r"(ahead|behind|not shown) \| s0 [+-]\d+\.\d, s1 ", text)


def test_deploy_script_exports_scores_and_times_every_runtime(tmp_path: Path, capsys) -> None:
    pytest.importorskip("onnxruntime", reason="onnxruntime is an optional extra (rtseg[full])")
    import rtseg

    make_camvid(tmp_path / "camvid")
    run = rtseg.train(ROOT / "configs/camvid/fpn_r18_bilinear.yaml", iters=1, batch_size=2,
                      crop_size=(32, 32), workers=0, device="cpu", amp=False,
                      data_root=str(tmp_path / "camvid"), out_dir=str(tmp_path / "runs"),
                      run_name="tiny", eval_interval=1, log_interval=1)
    from studies.deploy import run as deploy

    out = tmp_path / "deploy"
    argv = [f"tiny={run / 'best.pt'}", "--data", str(tmp_path / "camvid"), "--out", str(out),
            "--calib-images", "2", "--sizes", "32x48", "--warmup", "1", "--iters", "2",
            "--threads", "1"]
    assert deploy.main(argv) == 0
    res = json.loads((out / "tiny" / "results.json").read_text())
    acc, lat = res["accuracy"], res["latency"]["32x48"]
    assert acc["torch"]["pixels_changed_pct"] == 0 and acc["torch"]["images"] == 2
    assert abs(acc["ort_fp32"]["miou"] - acc["torch"]["miou"]) < 1e-6  # fp32 agrees
    assert {"torch", "ort_fp32", "ort_int8"} <= set(acc) == set(lat)
    assert all(v["p10_ms"] <= v["median_ms"] <= v["p90_ms"] for v in lat.values())
    # a second call finds everything done and redoes nothing
    before = (out / "tiny" / "results.json").stat().st_mtime_ns
    capsys.readouterr()
    assert deploy.main(argv) == 0
    assert (out / "tiny" / "results.json").stat().st_mtime_ns == before
    row = next(r for r in capsys.readouterr().out.splitlines() if r.startswith("| tiny | ")
               and r.count("×") == 2 and "ort_" not in r)  # the summary table's row
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert float(cells[1]) == pytest.approx(acc["ort_fp32"]["miou"], abs=0.01)
    assert float(cells[2]) == pytest.approx(acc["ort_int8"]["miou"] - acc["ort_fp32"]["miou"],
                                            abs=0.01)
    speed = lat["ort_fp32"]["median_ms"] / lat["ort_int8"]["median_ms"]
    assert float(cells[4].rstrip("×")) == pytest.approx(speed, abs=0.01)
    # a bare --sizes: accuracy only, and a summary without speed columns
    assert deploy.main([*argv[:argv.index("--sizes")], "--sizes"]) == 0
    summary = capsys.readouterr().out.split("\n\n")[-1].splitlines()
    assert summary[0].count("|") == 5 and "×" not in summary[0]
    assert summary[2].startswith("| tiny | ") and summary[2].count("|") == 5


def test_onnx_profile_sums_operator_time_by_type_after_the_warmup() -> None:
    prof = profile_onnx
    # ONNX Runtime's events of 1 warm-up and 2 timed runs (µs): the warm-up's nodes left out
    events = [{"name": "model_run", "ts": 0, "dur": 900},
              {"cat": "Node", "name": "c_kernel_time", "ts": 10, "dur": 800,
               "args": {"op_name": "Conv"}},
              {"name": "model_run", "ts": 1000, "dur": 3000},
              {"cat": "Node", "name": "c_kernel_time", "ts": 1010, "dur": 2000,
               "args": {"op_name": "Conv"}},
              {"cat": "Node", "name": "c_fence_before", "ts": 1011, "dur": 50,
               "args": {"op_name": "Conv"}},
              {"cat": "Node", "name": "r_kernel_time", "ts": 2500, "dur": 400,
               "args": {"op_name": "Relu"}},
              {"name": "model_run", "ts": 5000, "dur": 1000},
              {"cat": "Node", "name": "c_kernel_time", "ts": 5010, "dur": 600,
               "args": {"op_name": "Conv"}}]
    assert prof.ort_times(events, warmup=1, iters=2) == pytest.approx(
        {"Conv": 1.3, "Relu": 0.2, "(whole call)": 2.0})
    # each node's fastest timed call (Conv 0.6, Relu ran once: 0.4), summed
    assert prof.ort_times(events, warmup=1, iters=2, stat="min") == pytest.approx(
        {"Conv": 0.6, "Relu": 0.4, "(whole call)": 1.0, "(fastest call)": 1.0})
    # OpenVINO: (wall seconds, [(node type, seconds)]) of each timed call
    calls = [(0.010, [("Convolution", 0.006), ("Eltwise", 0.001)]),
             (0.020, [("Convolution", 0.010), ("Convolution", 0.002)])]
    assert prof.openvino_times(calls) == pytest.approx(
        {"Convolution": 9.0, "Eltwise": 0.5, "(whole call)": 15.0})


def test_onnx_profile_reports_every_operator_type_of_a_real_file(tmp_path: Path,
                                                                 capsys) -> None:
    pytest.importorskip("onnxruntime", reason="onnxruntime is an optional extra (rtseg[full])")
    import onnx

    from rtseg.deploy.runtimes import installed

    path = export_tiny("fpn_r18_bilinear", tmp_path / "m.onnx")
    op_types = {node.op_type for node in onnx.load(str(path)).graph.node}
    prof = profile_onnx
    ops = prof.profile(path, (32, 48), 1, 1, 2)
    # times themselves depend on the machine's load; which operators ran does not
    assert ops.pop("(whole call)") > 0 and {"Conv", "Resize"} <= op_types & set(ops)
    assert all(ms >= 0 for ms in ops.values())
    if installed("openvino"):
        ov_ops = prof.profile_openvino(path, (32, 48), 1, 1, 2)
        assert ov_ops.pop("(whole call)") > 0 and "Convolution" in ov_ops
    assert prof.main([str(tmp_path / "missing.onnx")]) == 2
    assert "missing.onnx: no such file" in capsys.readouterr().err
    assert prof.main([str(path), "--size", "32", "48", "--threads", "1", "--warmup", "1",
                      "--iters", "2", "--stat", "min"]) == 0
    assert "sum of per-node minima over 2 calls after 1" in capsys.readouterr().out


def test_int8_bisect_quantises_only_the_named_convolutions(tmp_path: Path, capsys) -> None:
    pytest.importorskip("onnxruntime", reason="onnxruntime is an optional extra (rtseg[full])")
    onnx = export_tiny("fpn_r18_gum", tmp_path / "m.onnx")
    bisect = int8_bisect
    capsys.readouterr()
    assert bisect.main([str(onnx), "--calib", "synthetic", "--only", "/lateral.0/", "/backbone/",
                        "--size", "32", "48", "--calib-images", "2", "--images", "1",
                        "--threads", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("/lateral.0/: 1 Conv quantised; pixels changed vs fp32: ONNX "
                               "Runtime ")
    assert lines[1].startswith("/backbone/: 20 Conv quantised")
    percent = float(lines[0].split("ONNX Runtime ")[1].split(" %")[0])
    assert 0.0 <= percent <= 100.0
    assert bisect.main([str(tmp_path / "none.onnx"), "--calib", "synthetic", "--only", "x"]) == 2


def test_run_study_turns_a_stop_and_a_user_error_into_one_line(capsys) -> None:
    from rtseg.errors import ConfigError, RunInterrupted

    def stopped() -> int:
        raise RunInterrupted("stopped by SIGTERM at iteration 29; last.pt written", 15)

    def mistaken() -> int:
        raise ConfigError("configs/x.yaml: unknown field(s) itres\nvalid fields: iters")

    assert common.run_study(stopped) == 143
    assert common.run_study(mistaken) == 2
    assert common.run_study(lambda: None) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "iteration 29" in err[0] and "Traceback" not in "".join(err)
    assert err[1].endswith("error: configs/x.yaml: unknown field(s) itres; valid fields: iters")
    with pytest.raises(ZeroDivisionError):  # a defect keeps its traceback
        common.run_study(lambda: 1 // 0)


def test_time_exports_times_each_applicable_variant(capsys) -> None:
    from tools import time_exports

    assert time_exports.main(["fpn_r18_bilinear", "fpn_r18_gum", "--variants", "plain", "fast",
                              "gather", "dynamic", "--size", "32", "48", "--threads", "1",
                              "--iters", "1", "--warmup", "0", "--num-classes", "3"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| fpn")]
    assert [r.split(" | ")[0] for r in rows] == [
        "| fpn_r18_bilinear [plain]", "| fpn_r18_bilinear [fast]", "| fpn_r18_bilinear [dynamic]",
        "| fpn_r18_gum [plain]", "| fpn_r18_gum [fast]", "| fpn_r18_gum [gather]",
        "| fpn_r18_gum [dynamic]"]  # bilinear has no GUM to gather
    assert rows[1].endswith("| 1.000 |  |")  # the floor: the first model's fast file


def test_time_exports_int8_twins_report_their_speed_up(capsys) -> None:
    pytest.importorskip("onnxruntime", reason="the int8 twins need onnxruntime's quantiser")
    from tools import time_exports

    assert time_exports.main(["fpn_r18_bilinear", "--int8", "--calib-images", "1", "--size",
                              "32", "48", "--threads", "1", "--iters", "1", "--warmup", "0",
                              "--num-classes", "3"]) == 0
    rows = [line.split(" | ") for line in capsys.readouterr().out.splitlines()
            if line.startswith("| fpn")]
    assert [r[0] for r in rows] == ["| fpn_r18_bilinear [fast]", "| fpn_r18_bilinear [fast int8]"]
    fp32_ms, int8_ms = float(rows[0][1]), float(rows[1][1])
    gain = float(rows[1][4].removesuffix("× |"))  # from the unrounded medians
    assert gain == pytest.approx(fp32_ms / int8_ms, rel=0.1) and rows[0][4].strip() == "|"


def test_time_exports_prepares_files_then_times_them(tmp_path, capsys) -> None:
    pytest.importorskip("onnxruntime", reason="the int8 twins need onnxruntime's quantiser")
    from tools import time_exports

    common = ["fpn_r18_bilinear", "--int8", "--calib-images", "1", "--size", "32", "48",
              "--threads", "1", "--iters", "1", "--warmup", "0", "--num-classes", "3",
              "--files", str(tmp_path)]
    assert time_exports.main([*common, "--prepare-only"]) == 0
    files = sorted(tmp_path.iterdir())
    assert [f.name for f in files] == ["fpn_r18_bilinear.fast.32x48.k3.int8_c1.onnx",
                                       "fpn_r18_bilinear.fast.32x48.k3.onnx"]
    assert not [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    written = {f: f.stat().st_mtime_ns for f in files}
    assert time_exports.main(common) == 0  # the files are reused, not written again
    assert {f: f.stat().st_mtime_ns for f in files} == written
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| fpn")]
    assert len(rows) == 2
    with pytest.raises(SystemExit):
        time_exports.parse_args(["fpn_r18_bilinear", "--prepare-only"])
