"""rtseg bench: the timing protocol, its report, BN folding (all on CPU, tiny sizes)."""

import argparse
import json

import numpy as np
import pytest
import torch
from torch import nn

import rtseg
from rtseg import cli
from rtseg.bench import (
    BenchSettings,
    benchmark,
    cases,
    format_report,
    run_benchmark,
    time_interleaved,
    timing,
)
from rtseg.bench.timing import add_floors
from rtseg.cli import bench as bench_cli
from rtseg.complexity import count_macs, count_params
from rtseg.deploy.fuse import count_bn, fold_batchnorm
from rtseg.errors import UnknownNameError, UsageError

TINY = dict(size=(32, 64), device="cpu", warmup=1, iters=3, reference_size=128)
SETTINGS = {"torch", "device", "threads", "precision", "channels_last", "compile", "fold_bn",
            "argmax", "size", "batch"}
ROW = {"name", "params_m", "gmac", "median_ms", "p10_ms", "p90_ms", "fps", "gflops",
       "efficiency_pct", "peak_mem_mb", "relative", "times_ms"}


pytestmark = pytest.mark.usefixtures("one_thread")


def _cli(*argv: str) -> int:
    """``rtseg bench ARGV`` through the subcommand's own parser, as ``rtseg.cli`` mounts it."""
    parser = argparse.ArgumentParser(prog="rtseg")
    bench_cli.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["bench", *argv])
    return args.func(args)


def _run(models=(), **kwargs):
    """``run_benchmark`` of ``BenchSettings(models, **kwargs)``."""
    return run_benchmark(settings=BenchSettings(models, **kwargs))


def _sane(row, batch, iters):
    assert set(row) >= ROW
    assert len(row["times_ms"]) == iters
    assert 0 < row["p10_ms"] <= row["median_ms"] <= row["p90_ms"]
    assert row["fps"] == pytest.approx(batch / (row["median_ms"] / 1e3))
    assert row["gmac"] > 0 and row["gflops"] > 0 and row["efficiency_pct"] > 0
    assert row["peak_mem_mb"] is None or row["peak_mem_mb"] >= row["params_m"] * 4 * 0.95


def test_library_two_models():
    rows = benchmark(["fpn_r18_bilinear", "fanet18"], **TINY)
    assert [r["name"] for r in rows] == ["fpn_r18_bilinear", "fanet18"]
    for r in rows:
        _sane(r, 1, 3)
        model = rtseg.create_model(r["name"], 19, aux=False)
        assert r["params_m"] == pytest.approx(count_params(model) / 1e6)
        assert r["gmac"] == pytest.approx(count_macs(model, (32, 64)) / 1e9)
        assert r["bn_folded"] is None and r["bn_left"] == count_bn(model)
    assert min(r["relative"] for r in rows) == 1.0


def test_cli_json_and_report(tmp_path, capsys):
    out = tmp_path / "bench.json"
    torch.set_num_threads(3)  # not the value --threads asks for: restored afterwards?
    rc = _cli("fpn_r18_bilinear", "--size", "32", "64", "--device", "cpu", "--warmup", "1",
              "--iters", "3", "--batch", "2", "--argmax", "--fold-bn", "--threads", "1",
              "--matmul-size", "128", "--json", str(out))
    assert rc == 0
    data = json.loads(out.read_text())
    s = data["settings"]
    assert set(s) >= SETTINGS
    assert (s["size"], s["batch"], s["argmax"], s["fold_bn"], s["threads"]) == (
        [32, 64], 2, True, True, 1)
    assert s["precision"] == "fp32" and s["device_type"] == "cpu"
    assert data["reference"]["n"] == 128 and data["reference"]["gflops"] > 0
    (row,) = data["results"]
    _sane(row, 2, 3)
    assert row["bn_left"] == 0 and row["bn_folded"] > 0
    assert row["efficiency_pct"] == pytest.approx(
        100 * row["gflops"] / data["reference"]["gflops"])
    text = capsys.readouterr().out
    # the settings are printed above the table
    assert text.index("precision fp32") < text.index("median ms") < text.index("fpn_r18_bilinear")
    assert torch.get_num_threads() == 3


def test_compare_interleaves_round_robin():
    names = ["fpn_r18_bilinear", "fanet18"]
    rows = _run(names, compare=True, reference=False, **{**TINY, "iters": 4})["results"]
    starts = [r["starts_s"] for r in rows]
    for k in range(3):  # every model's k-th call comes before any model's (k+1)-th call
        assert max(s[k] for s in starts) < min(s[k + 1] for s in starts)
    for r in rows:
        _sane({**r, "efficiency_pct": 1.0}, 1, 4)
        assert r["efficiency_pct"] is None
    seq = _run(names, reference=False, **TINY)["results"]
    assert max(seq[0]["starts_s"]) < min(seq[1]["starts_s"])  # without --compare: one by one


def _linear_percentile(sorted_values, q):
    """The hand-written rule bench used before ``numpy.percentile`` (linear interpolation)."""
    pos = (len(sorted_values) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def test_percentiles_are_the_linear_ones():
    times = [0.005, 0.001, 0.004, 0.010, 0.002, 0.003]  # s, unsorted as timed
    item = timing.Item("m", None, params=2_000_000, macs=10**9, resident_bytes=0, times=times)
    (row,) = timing.result_rows([item], batch=2, reference={"gflops": 100.0})
    # sorted 1 2 3 4 5 10 ms: positions 0.5, 2.5 and 4.5 of 0..5
    assert (row["p10_ms"], row["median_ms"], row["p90_ms"]) == pytest.approx((1.5, 3.5, 7.5))
    assert row["mean_ms"] == pytest.approx(25 / 6)
    assert row["fps"] == pytest.approx(2 / 0.0035) and row["relative"] == 1.0
    assert row["gflops"] == pytest.approx(2 * 1 * 2 / 0.0035)  # 2·GMAC·batch / median
    assert row["efficiency_pct"] == pytest.approx(row["gflops"])  # of a 100 GFLOP/s reference
    rng = np.random.default_rng(0)
    for n in (1, 2, 3, 7, 50):
        t = rng.exponential(size=n).tolist()
        lat = timing.latency(t)
        for q, key in ((10, "p10"), (50, "median"), (90, "p90")):
            assert lat[key] == pytest.approx(_linear_percentile(sorted(t), q), rel=1e-12)



# BatchNorms with no conv before them to fold into: BiSeNetV2's context embedding normalises
# the globally pooled vector; the peers' pre-activation units (BN → ReLU → conv) read a pool,
# a sum or a concatenation (DAPPM's / PAPPM's branches, compression and shortcut; the head's
# first BN reads low + high or the Bag fusion).
UNFOLDABLE_BN = {"bisenetv2": 1, "pidnet_s": 9, "ddrnet23_slim": 12}


@pytest.mark.parametrize("name", rtseg.list_models())
def test_fold_bn_equivalence(name, randomise):
    model = randomise(rtseg.create_model(name, 5, aux=False))
    n_bn = count_bn(model)
    folded = fold_batchnorm(model)
    assert count_bn(folded) == UNFOLDABLE_BN.get(name, 0)
    assert count_bn(model) == n_bn > 0  # the original is untouched
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        ref, out = model(x), folded(x)
    # relative to the logits' range, as fold_batchnorm's own check (the peers' official
    # initialisation gives logits in the hundreds; every other model's stay below 1)
    assert (ref - out).abs().max().item() <= 1e-4 * max(1.0, ref.abs().max().item())


def test_fold_keeps_bn_whose_conv_output_is_shared(randomise):
    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.bn = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)

        def forward(self, x):
            y = self.conv(x)
            return self.bn(y) + y  # y is read twice: folding would change the sum

    model = randomise(Shared())
    folded = fold_batchnorm(model)
    assert count_bn(folded) == 1
    x = torch.randn(1, 3, 8, 8)
    torch.testing.assert_close(folded(x), model(x))


def test_fold_bias_free_conv_into_bn_without_affine():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4, affine=False))
    with torch.no_grad():
        model[1].running_mean.normal_(0, 0.5)
        model[1].running_var.uniform_(0.5, 2.0)
    folded = fold_batchnorm(model.eval())
    assert count_bn(folded) == 0 and isinstance(folded[1], nn.Identity)
    assert folded[0].bias is not None and not folded[0].weight.requires_grad
    assert folded[0].weight.dtype == folded[0].bias.dtype == torch.float32
    x = torch.randn(2, 3, 9, 9)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x))


def test_bad_arguments_raise_usage_errors():
    with pytest.raises(UnknownNameError, match="unknown model 'nope'") as e:
        _cli("nope", "--device", "cpu")
    assert "fpn_r18_gai" in str(e.value)  # the message lists the valid names
    with pytest.raises(UnknownNameError, match="unknown module 'magic'"):
        BenchSettings(modules=["magic"], device="cpu")
    with pytest.raises(UsageError, match="model names or --module"):
        _cli("--device", "cpu")
    with pytest.raises(UsageError, match="size must be two positive integers"):
        BenchSettings(["fanet18"], device="cpu", size=(0, 64))  # the CLI refuses it earlier
    with pytest.raises(UsageError, match="must be >= 1"):
        BenchSettings(["fanet18"], device="cpu", iters=0)
    with pytest.raises(UsageError, match="unknown device 'tpu9'|not supported"):
        BenchSettings(["fanet18"], device="tpu9")
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="CUDA is not available"):
            _cli("fanet18", "--device", "cuda")


def test_cli_prints_a_usage_error_as_one_line(capsys):
    assert cli.main(["bench", "nope", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rtseg bench: error: unknown model 'nope'") and err.count("\n") == 1


def test_module_micro_benchmark():
    names = ["fast_attention", "gai_nonlocal", "gum", "ifa", "attention:criss_cross"]
    rows = _run(modules=names, channels=16, size=(16, 24), device="cpu", warmup=1,
                iters=2, reference=False, floor=False)["results"]
    assert [r["name"] for r in rows] == names
    for r in rows:
        assert r["gmac"] > 0 and r["p10_ms"] <= r["median_ms"] <= r["p90_ms"]
    # non-local attention is quadratic in the 384 positions, fast attention linear
    by = {r["name"]: r for r in rows}
    assert by["gai_nonlocal"]["gmac"] > by["fast_attention"]["gmac"]


def test_floor_of_hand_made_rows():
    rows = [
        {"name": "fpn_r18_bilinear (rate)", "error": None, "gmac": 4.0, "gflops": 100.0,
         "median_ms": 80.0},
        {"name": "bilinear", "error": None, "gmac": 1.0, "median_ms": 30.0},
        {"name": "gai", "error": None, "gmac": 3.0, "median_ms": 140.0},
        {"name": "attention:fast", "error": None, "gmac": 0.5, "median_ms": 40.0},
        {"name": "ifa", "error": "out of memory"},
    ]
    add_floors(rows, "fpn_r18_bilinear (rate)", "bilinear", batch=1)
    # 2 GFLOP per GMAC at 100 GFLOP/s: 20 ms per GMAC
    assert rows[2]["floor_ms"] == pytest.approx(30.0 + 2.0 * 20)  # base + extra MACs
    assert rows[2]["over_floor"] == pytest.approx(140 / 70)
    assert rows[3]["floor_ms"] == pytest.approx(0.5 * 20)  # a bare kernel: all its MACs
    assert rows[1]["floor_ms"] == pytest.approx(30.0)
    assert "floor_ms" not in rows[4]
    # batch 2: the rate network did 2·4 GMAC·2 images in 80 ms, 200 GFLOP/s
    models = [dict(rows[0], name="fpn_r18_bilinear", gflops=200.0),
              {"name": "fpn_r18_gai", "error": None, "gmac": 5.0, "median_ms": 120.0}]
    add_floors(models, "fpn_r18_bilinear", None, batch=2)
    assert models[0]["over_floor"] == pytest.approx(1.0)  # the rate row sits on its floor
    assert models[1]["floor_ms"] == pytest.approx(100.0)


def test_module_run_times_the_rate_network_and_reports_floors():
    result = _run(modules=["bilinear", "gai", "attention:criss_cross"], channels=16,
                  size=(8, 12), device="cpu", warmup=1, iters=2, reference=False, compare=True)
    by = {r["name"]: r for r in result["results"]}
    rate = by["fpn_r18_bilinear (input 32×48, rate)"]
    per_gmac = 2 / rate["gflops"] * 1e3
    assert by["gai"]["floor_ms"] == pytest.approx(
        by["bilinear"]["median_ms"] + (by["gai"]["gmac"] - by["bilinear"]["gmac"]) * per_gmac)
    assert by["attention:criss_cross"]["floor_ms"] == pytest.approx(
        by["attention:criss_cross"]["gmac"] * per_gmac)
    assert "× floor" in format_report(result)


def test_low_precision_on_cpu_runs_or_says_why():
    for precision in ("bf16", "fp16"):
        try:
            (row,) = benchmark(["fpn_r18_bilinear"], precision=precision, reference=False,
                               **TINY)
        except UsageError as e:
            assert f"--precision {precision}" in str(e)
        else:
            assert row["median_ms"] > 0


def test_out_of_memory_is_reported_and_the_run_goes_on(monkeypatch, capsys):
    class Hungry(nn.Module):
        def forward(self, x):
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to ...")

    real = cases.create_model

    def create(name, *args, **kwargs):
        return Hungry() if name == "fanet18" else real(name, *args, **kwargs)

    monkeypatch.setattr(cases, "create_model", create)
    for compare in (False, True):
        result = _run(["fanet18", "fpn_r18_bilinear"], compare=compare, reference=False,
                      **TINY)
        hungry, ok = result["results"]
        assert hungry["error"].startswith("out of memory") and "median_ms" not in hungry
        assert ok["error"] is None and ok["relative"] == 1.0 and len(ok["times_ms"]) == 3
    assert "fanet18: not timed: out of memory" in format_report(result)


def test_settings_are_checked_and_normalised_once():
    s = BenchSettings(["fanet18", "all"], device="cpu", backends=("torch", "torch"))
    assert s.models[0] == "fanet18" and len(s.models) == len(set(s.models)) > 1
    assert s.device == torch.device("cpu") and (s.warmup, s.iters) == (2, 10)
    assert s.size == (1024, 2048) and s.backends == ["torch"] and s.kind == "models"
    m = BenchSettings(modules=["gai"], device="cpu")
    assert m.size == (128, 256) and m.timed_names()[0] == "gai" and len(m.timed_names()) == 2
    assert BenchSettings(modules=["gai"], device="cpu", floor=False).timed_names() == ["gai"]
    with pytest.raises(UsageError, match="threads must be >= 1"):
        BenchSettings(["fanet18"], device="cpu", threads=0)
    with pytest.raises(UsageError, match="not both"):
        run_benchmark(["fanet18"], settings=s)


def test_keyword_settings_still_run_with_a_deprecation_warning():
    with pytest.warns(DeprecationWarning, match="BenchSettings"):
        result = run_benchmark(["fpn_r18_bilinear"], reference=False, **TINY)
    assert result["results"][0]["error"] is None and result["results"][0]["median_ms"] > 0


def test_time_interleaved_times_callables_round_robin():
    calls = []
    stats = time_interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
                             warmup=2, iters=3)
    assert calls == ["a", "a", "b", "b", "a", "b", "b", "a", "a", "b"]
    assert list(stats) == ["a", "b"]
    for v in stats.values():
        assert set(v) == {"p10_ms", "median_ms", "p90_ms", "mean_ms"}
        assert 0 <= v["p10_ms"] <= v["median_ms"] <= v["p90_ms"]
    with pytest.raises(UsageError, match="iters >= 1"):
        time_interleaved({"a": lambda: None}, iters=0)


def test_train_step_timing_tool_times_both_layouts(capsys):
    from tools.time_train_step import main

    main(["--model", "fpn_r18_bilinear", "--batch", "2", "--size", "32", "48", "--iters", "1"])
    out = capsys.readouterr().out
    assert "| NCHW |" in out and "| NHWC |" in out and "NHWC / NCHW: " in out


def test_train_step_timing_tool_times_fp32_against_bf16_autocast(capsys, monkeypatch):
    import torch

    from tools import time_train_step

    dtypes = []
    step_fn = time_train_step.step_fn

    def spy(model, *args, **kwargs):
        model.register_forward_hook(lambda m, i, o: dtypes.append(o[0].dtype))
        return step_fn(model, *args, **kwargs)

    monkeypatch.setattr(time_train_step, "step_fn", spy)
    time_train_step.main(["--model", "fpn_r18_bilinear", "--batch", "2", "--size", "32", "48",
                          "--iters", "1", "--amp"])
    out = capsys.readouterr().out
    assert "| fp32 |" in out and "| bf16 |" in out and "bf16 / fp32: " in out
    assert sorted(set(dtypes), key=str) == [torch.bfloat16, torch.float32]


def test_train_step_timing_tool_times_fast_against_reference_paths(capsys, monkeypatch):
    from rtseg.upsample import reassembly
    from tools.time_train_step import main

    calls = []
    fn = reassembly._scatter_phases
    monkeypatch.setattr(reassembly, "_scatter_phases", lambda *a: calls.append(1) or fn(*a))
    main(["--model", "fpn_r18_carafe", "--batch", "2", "--size", "32", "32", "--iters", "1",
          "--reference-paths"])
    out = capsys.readouterr().out
    assert "| reference |" in out and "| fast |" in out and "fast / reference: " in out
    assert len(calls) == 2 * 3  # the fast copy's warm-up and timed step, 3 upsamplers each


@pytest.mark.parametrize("backend, expected", [("onnxruntime", "gather"), ("openvino", "op")])
def test_bench_exports_gum_sampling_the_way_each_runtime_runs_faster(
        monkeypatch, backend: str, expected: str) -> None:
    from rtseg.bench import cases
    from rtseg.deploy import export, runtimes

    seen = {}

    def fake_export(model, path, size, **kw):
        seen.update(kw)
        return path

    monkeypatch.setattr(export, "export_onnx", fake_export)
    monkeypatch.setitem(runtimes.RUNTIMES, backend, lambda path, threads: "session")
    setup = cases.Setup(device=torch.device("cpu"), size=(32, 32))
    assert cases._exported(nn.Identity(), setup, backend) == "session"
    assert seen["grid_sample"] == expected and seen["dynamic"] is False
