"""studies.speed_table: every requested row timed and recorded, the floor arithmetic, resuming,
the report block from the JSON alone, bad input as one line. Tiny: two models at 32×48."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime", reason="the ORT variants and the int8 quantiser need "
                                          "onnxruntime (rtseg[full])")

from rtseg.deploy.runtimes import installed  # noqa: E402
from studies.common import run_study  # noqa: E402
from studies.speed_table import report as rep  # noqa: E402
from studies.speed_table import run as script  # noqa: E402

MODELS = ["fpn_lite0_bilinear", "fpn_r18_bilinear"]
VARIANTS = ["torch", "ort_fp32", "ort_int8"] + (
    ["openvino_fp32", "openvino_int8"] if installed("openvino") else [])


def argv(folder: Path, *extra: str, variants: list[str] = VARIANTS) -> list[str]:
    return ["--sizes", "32x48", "--models", *MODELS, "--variants", *variants,
            "--iters", "2", "--warmup", "1", "--threads", "1", "--calib-images", "2",
            "--num-classes", "3", "--out", str(folder / "out"),
            "--json", str(folder / "speed.json"), "--docs", str(folder / "docs"), *extra]


@pytest.fixture(scope="module")
def measured(tmp_path_factory) -> Path:
    """One tiny table, measured once for the module's tests."""
    folder = tmp_path_factory.mktemp("speed_table")
    assert script.main(argv(folder)) == 0
    return folder


def test_every_requested_row_is_recorded_with_ordered_percentiles(measured: Path) -> None:
    records = json.loads((measured / "speed.json").read_text())
    assert [r["size"] for r in records] == ["32x48"]
    rec = records[0]
    assert {(r["model"], r["variant"]) for r in rec["rows"]} == {
        (m, v) for m in MODELS for v in VARIANTS}
    for r in rec["rows"]:
        assert 0 < r["p10_ms"] <= r["median_ms"] <= r["p90_ms"]
        assert r["gmac"] > 0 and r["params"] > 0
    s = rec["settings"]
    assert (s["threads"], s["iters"], s["num_classes"]) == (1, 2, 3)
    assert s["torch"] and s["onnxruntime"] and s["device"] and s["date"]
    r18 = next(r for r in rec["rows"] if r["model"] == "fpn_r18_bilinear")
    assert 10e6 < r18["params"] < 13e6  # ResNet-18 and its FPN head


def test_floors_in_the_record_are_gmac_times_the_rate_rows_ms_per_gmac(measured: Path) -> None:
    rows = json.loads((measured / "speed.json").read_text())[0]["rows"]
    for v in VARIANTS:
        rate = next(r for r in rows if r["variant"] == v and r["model"] == "fpn_r18_bilinear")
        assert rate["over_floor"] == pytest.approx(1.0)
        other = next(r for r in rows if r["variant"] == v and r["model"] == MODELS[0])
        floor = other["gmac"] * rate["median_ms"] / rate["gmac"]
        assert other["floor_ms"] == pytest.approx(floor)
        assert other["over_floor"] == pytest.approx(other["median_ms"] / floor)


def test_floor_formula_on_hand_made_numbers() -> None:
    rows = [{"model": "fpn_r18_bilinear", "variant": "torch", "gmac": 2.0, "median_ms": 10.0},
            {"model": "a", "variant": "torch", "gmac": 3.0, "median_ms": 30.0},
            {"model": "fpn_r18_bilinear", "variant": "ort_int8", "gmac": 2.0, "median_ms": 4.0},
            {"model": "a", "variant": "ort_int8", "gmac": 3.0, "median_ms": 3.0},
            {"model": "a", "variant": "ort_fp32", "gmac": 3.0, "median_ms": 7.0}]
    out = rep.with_floors(rows)
    got = [(r["floor_ms"], r["over_floor"]) for r in out]
    # torch: 5 ms a GMAC; int8: 2 ms a GMAC; ort_fp32 has no rate row, so no floor
    assert got[0] == pytest.approx((10.0, 1.0)) and got[1] == pytest.approx((15.0, 2.0))
    assert got[2] == pytest.approx((4.0, 1.0)) and got[3] == pytest.approx((6.0, 0.5))
    assert got[4] == (None, None)
    assert [r["median_ms"] for r in out] == [r["median_ms"] for r in rows]


def test_a_second_call_redoes_nothing(measured: Path, monkeypatch) -> None:
    path = measured / "speed.json"
    before = path.stat().st_mtime_ns, path.read_text()

    def refuse(*a, **k):
        raise AssertionError("timed or exported again")

    for name in ("time_interleaved", "export_onnx", "quantise_in_child", "model_calls"):
        monkeypatch.setattr(script, name, refuse)
    assert script.main(argv(measured)) == 0
    assert (path.stat().st_mtime_ns, path.read_text()) == before


def test_redo_times_a_recorded_size_again(measured: Path, monkeypatch) -> None:
    calls = []
    real = script.time_interleaved
    monkeypatch.setattr(script, "time_interleaved",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    monkeypatch.setattr(script, "export_onnx", lambda *a, **k: pytest.fail("files are reused"))
    assert script.main(argv(measured, "--redo")) == 0
    assert calls and json.loads((measured / "speed.json").read_text())[0]["size"] == "32x48"


def test_report_only_rewrites_the_block_from_the_json_alone(measured: Path, monkeypatch) -> None:
    docs = measured / "docs"
    page = docs / "benchmarks.md"
    above, below = "# Speed\n\nText above.\n\n", "\n\n## Later\n\nText below.\n"
    page.write_text(above + "<!-- speed_table:begin -->\nOLD\n<!-- speed_table:end -->" + below)
    monkeypatch.setattr(script, "model_calls", lambda *a, **k: pytest.fail("measured"))
    json_before = (measured / "speed.json").read_text()
    assert script.main(argv(measured, "--report-only") + ["--sizes", "32x48", "64x64"]) == 0
    text = page.read_text()
    assert text.startswith(above + "<!-- speed_table:begin -->\n" + rep.TITLE)
    assert text.endswith("<!-- speed_table:end -->" + below) and "OLD" not in text
    block = text[text.index(rep.TITLE):text.index("<!-- speed_table:end -->")]
    rows = json.loads(json_before)[0]["rows"]
    lite = next(r for r in rows if r["model"] == MODELS[0] and r["variant"] == "torch")
    line = next(s for s in block.splitlines() if s.startswith(f"| {MODELS[0]} |"))
    assert f"({lite['over_floor']:.2f})" in line and line.endswith("| – |")
    assert block.index(f"| {MODELS[0]} |") < block.index("| fpn_r18_bilinear |")
    assert "Not measured yet: `python -m studies.speed_table.run --sizes 64x64`" in block
    assert "Fastest at 32×48: PyTorch fp32 " in block
    assert (measured / "speed.json").read_text() == json_before


def test_published_figures_and_row_order() -> None:
    assert rep.published("pidnet_s") == "93.2 FPS, RTX 3090, PyTorch, 1024×2048"
    assert rep.published("stdc1_seg") == "250.4 FPS, GTX 1080Ti, TensorRT, 512×1024"
    assert rep.published("ifa_r18") == rep.published("fpn_lite0_gai") == "–"
    shuffled = ["fpn_r18_bilinear", "stdc1_seg", "fpn_lite0_gum", "gun", "gain_r18"]
    assert sorted(shuffled, key=rep.model_order) == [
        "gain_r18", "gun", "fpn_lite0_gum", "stdc1_seg", "fpn_r18_bilinear"]
    assert all(math.isfinite(p["fps"]) and p["source"] for p in rep.PUBLISHED.values())


def test_a_bad_size_is_one_line(tmp_path: Path, capsys) -> None:
    assert run_study(lambda: script.main(argv(tmp_path) + ["--sizes", "12"])) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'12'" in err and "HxW" in err
    assert not (tmp_path / "speed.json").exists()


def test_missing_openvino_is_skipped_with_its_reason(tmp_path: Path, monkeypatch,
                                                     capsys) -> None:
    monkeypatch.setattr(script, "installed", lambda backend: backend != "openvino")
    assert script.main(argv(tmp_path, variants=["torch", "openvino_int8"])) == 0
    assert "skipped openvino_int8: openvino is not installed" in capsys.readouterr().out
    rec = json.loads((tmp_path / "speed.json").read_text())[0]
    assert rec["variants"] == ["torch"] and {r["variant"] for r in rec["rows"]} == {"torch"}
    assert "Not timed: openvino_int8: openvino is not installed" in " ".join(
        (tmp_path / "docs" / "benchmarks.md").read_text().split())


def test_too_little_memory_stops_the_size_with_one_line(tmp_path: Path, monkeypatch,
                                                        capsys) -> None:
    free = iter([8 << 30, 3 << 30])  # the first model takes 5 GB, 3 GB are left
    monkeypatch.setattr(script, "available_bytes", lambda: next(free))
    code = run_study(lambda: script.main(argv(tmp_path, variants=["torch"])))
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "after 1 of 2 models" in err
    assert not (tmp_path / "speed.json").exists()


def test_chunks_time_each_group_with_the_rate_row(tmp_path: Path, capsys) -> None:
    models = ["fpn_lite0_bilinear", "fpn_lite0_gum", "fpn_r18_bilinear"]
    args = argv(tmp_path, "--chunk", "1", variants=["torch"])
    args[args.index("--models") + 1:args.index("--variants")] = models
    assert script.main(args) == 0
    rows = json.loads((tmp_path / "speed.json").read_text())[0]["rows"]
    assert [(r["model"], r["chunk"]) for r in rows] == [
        ("fpn_lite0_bilinear", 0), ("fpn_r18_bilinear", 0),
        ("fpn_lite0_gum", 1), ("fpn_r18_bilinear", 1)]
    for chunk in (0, 1):  # each group's floor from its own rate row
        rate = next(r for r in rows if r["chunk"] == chunk and r["model"] == "fpn_r18_bilinear")
        other = next(r for r in rows if r["chunk"] == chunk and r["model"] != rate["model"])
        assert other["floor_ms"] == pytest.approx(
            other["gmac"] * rate["median_ms"] / rate["gmac"])
    table = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| fpn")]
    assert [line.split(" | ")[0] for line in table] == [
        "| fpn_lite0_bilinear", "| fpn_lite0_gum", "| fpn_r18_bilinear"]  # the rate row once


def test_an_int8_file_openvino_cannot_compile_is_not_timed(tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("openvino", reason="the OpenVINO variants need openvino")
    monkeypatch.setattr(script, "openvino_compiles", lambda path: (
        "fails: the process died (signal 11)" if "fpn_lite0" in str(path) else "compiles"))
    assert script.main(argv(tmp_path, variants=["ort_int8", "openvino_int8"])) == 0
    rec = json.loads((tmp_path / "speed.json").read_text())[0]
    assert {(r["model"], r["variant"]) for r in rec["rows"]} == {
        ("fpn_lite0_bilinear", "ort_int8"), ("fpn_r18_bilinear", "ort_int8"),
        ("fpn_r18_bilinear", "openvino_int8")}
    why = "fpn_lite0_bilinear openvino_int8: OpenVINO fails: the process died (signal 11)"
    assert why in rec["skipped"]
    assert f"Not timed: {why}" in " ".join((tmp_path / "docs" / "benchmarks.md").read_text()
                                           .split())


def test_prepare_only_makes_the_files_times_nothing_and_the_timing_reuses_them(
        tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(script, "time_interleaved", lambda *a, **k: pytest.fail("timed"))
    monkeypatch.setattr(script, "RUNTIMES", {})  # no session is opened
    assert script.main(argv(tmp_path, "--prepare-only", variants=["torch", "ort_int8"])) == 0
    files = sorted(p.name for p in (tmp_path / "out").rglob("*.onnx"))
    assert files == ["fpn_lite0_bilinear.int8_c2.onnx", "fpn_lite0_bilinear.onnx",
                     "fpn_r18_bilinear.int8_c2.onnx", "fpn_r18_bilinear.onnx"]
    assert not (tmp_path / "speed.json").exists() and not (tmp_path / "docs").exists()
    monkeypatch.undo()
    for name in ("export_onnx", "quantise_in_child"):
        monkeypatch.setattr(script, name, lambda *a, **k: pytest.fail("exported again"))
    assert script.main(argv(tmp_path, variants=["torch", "ort_int8"])) == 0
    rows = json.loads((tmp_path / "speed.json").read_text())[0]["rows"]
    assert {(r["model"], r["variant"]) for r in rows} == {
        (m, v) for m in MODELS for v in ("torch", "ort_int8")}


def test_an_int8_file_that_cannot_be_made_is_not_timed_nor_retried(tmp_path: Path,
                                                                   monkeypatch) -> None:
    why = "int8 calibration ran out of memory (the process was killed)"
    real = script.quantise_in_child
    monkeypatch.setattr(script, "quantise_in_child", lambda fp32, q, *a: (
        why if "fpn_lite0" in q.name else real(fp32, q, *a)))
    assert script.main(argv(tmp_path, variants=["ort_fp32", "ort_int8"])) == 0
    rec = json.loads((tmp_path / "speed.json").read_text())[0]
    assert {(r["model"], r["variant"]) for r in rec["rows"]} == {
        ("fpn_lite0_bilinear", "ort_fp32"), ("fpn_r18_bilinear", "ort_fp32"),
        ("fpn_r18_bilinear", "ort_int8")}
    assert f"fpn_lite0_bilinear ort_int8: {why}" in rec["skipped"]
    failed = next((tmp_path / "out").rglob("fpn_lite0_bilinear.int8_c2.failed"))
    assert failed.read_text().strip() == why  # remembered: delete the file to try again
    monkeypatch.setattr(script, "quantise_in_child", lambda *a: pytest.fail("tried again"))
    path, again = script.exported(script.random_model("fpn_lite0_bilinear", script.parse_args(
        argv(tmp_path))), "fpn_lite0_bilinear", (32, 48), "onnxruntime", True,
        script.parse_args(argv(tmp_path)))
    assert again == why and not path.exists()


def test_the_quantising_child_reports_why_it_failed(tmp_path: Path, monkeypatch) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    why = script.quantise_in_child(bad, tmp_path / "bad.int8.onnx", (32, 48), 1)
    assert why is not None and why.startswith("int8 quantiser failed: ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.onnx"]  # no partial file
    monkeypatch.setattr(script.subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(
        a[0], -9, "", ""))
    assert script.quantise_in_child(bad, tmp_path / "x.onnx", (32, 48), 1) == (
        "int8 calibration ran out of memory (the process was killed)")
