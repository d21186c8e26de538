"""rtseg bench: the timing protocol, its report, BN folding (all on CPU, tiny sizes)."""

import json

import pytest
import torch
from torch import nn

import rtseg
from rtseg import bench, cli
from rtseg.bench import benchmark, count_bn, fold_batchnorm, run_benchmark
from rtseg.complexity import count_macs, count_params

TINY = dict(size=(32, 64), device="cpu", warmup=1, iters=3, reference_size=128)
SETTINGS = {"torch", "device", "threads", "precision", "channels_last", "compile", "fold_bn",
            "argmax", "size", "batch"}
ROW = {"name", "params_m", "gmac", "median_ms", "p10_ms", "p90_ms", "fps", "gflops",
       "efficiency_pct", "peak_mem_mb", "relative", "times_ms"}


pytestmark = pytest.mark.usefixtures("one_thread")


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
    rc = cli.main(["bench", "fpn_r18_bilinear", "--size", "32", "64", "--device", "cpu",
                   "--warmup", "1", "--iters", "3", "--batch", "2", "--argmax", "--fold-bn",
                   "--threads", "1", "--matmul-size", "128", "--json", str(out)])
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
    rows = run_benchmark(names, compare=True, reference=False, **{**TINY, "iters": 4})["results"]
    starts = [r["starts_s"] for r in rows]
    for k in range(3):  # every model's k-th call comes before any model's (k+1)-th call
        assert max(s[k] for s in starts) < min(s[k + 1] for s in starts)
    for r in rows:
        _sane({**r, "efficiency_pct": 1.0}, 1, 4)
        assert r["efficiency_pct"] is None
    seq = run_benchmark(names, reference=False, **TINY)["results"]
    assert max(seq[0]["starts_s"]) < min(seq[1]["starts_s"])  # without --compare: one by one



@pytest.mark.parametrize("name", rtseg.list_models())
def test_fold_bn_equivalence(name, randomise):
    model = randomise(rtseg.create_model(name, 5, aux=False))
    n_bn = count_bn(model)
    folded = fold_batchnorm(model)
    assert count_bn(folded) == 0 and count_bn(model) == n_bn > 0  # the original is untouched
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        ref, out = model(x), folded(x)
    assert (ref - out).abs().max().item() <= 1e-4


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


def test_bad_names_give_clear_errors(capsys):
    assert cli.main(["bench", "nope", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'nope'" in err and "fpn_r18_gai" in err
    with pytest.raises(ValueError, match="unknown module 'magic'"):
        run_benchmark(modules=["magic"], device="cpu")
    with pytest.raises(ValueError, match="model names or --module"):
        run_benchmark(device="cpu")


def test_module_micro_benchmark():
    names = ["fast_attention", "gai_nonlocal", "gum", "ifa", "attention:criss_cross"]
    rows = run_benchmark(modules=names, channels=16, size=(16, 24), device="cpu", warmup=1,
                         iters=2, reference=False)["results"]
    assert [r["name"] for r in rows] == names
    for r in rows:
        assert r["gmac"] > 0 and r["p10_ms"] <= r["median_ms"] <= r["p90_ms"]
    # non-local attention is quadratic in the 384 positions, fast attention linear
    by = {r["name"]: r for r in rows}
    assert by["gai_nonlocal"]["gmac"] > by["fast_attention"]["gmac"]


def test_low_precision_on_cpu_runs_or_says_why():
    for precision in ("bf16", "fp16"):
        try:
            (row,) = benchmark(["fpn_r18_bilinear"], precision=precision, reference=False,
                               **TINY)
        except RuntimeError as e:
            assert f"--precision {precision}" in str(e)
        else:
            assert row["median_ms"] > 0


def test_out_of_memory_is_reported_and_the_run_goes_on(monkeypatch, capsys):
    class Hungry(nn.Module):
        def forward(self, x):
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to ...")

    real = bench.create_model

    def create(name, *args, **kwargs):
        return Hungry() if name == "fanet18" else real(name, *args, **kwargs)

    monkeypatch.setattr(bench, "create_model", create)
    for compare in (False, True):
        result = run_benchmark(["fanet18", "fpn_r18_bilinear"], compare=compare,
                               reference=False, **TINY)
        hungry, ok = result["results"]
        assert hungry["error"].startswith("out of memory") and "median_ms" not in hungry
        assert ok["error"] is None and ok["relative"] == 1.0 and len(ok["times_ms"]) == 3
    assert "fanet18: not timed: out of memory" in bench.format_report(result)
