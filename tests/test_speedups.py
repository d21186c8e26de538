"""The fast paths of the upsamplers: same function, caches off while tracing."""

import math

import pytest
import torch
import torch.nn.functional as F

import rtseg
import rtseg.bench
from rtseg.deploy.export import export_onnx
from rtseg.layers import ConvBNAct, pointwise, reference_paths
from rtseg.upsample import (
    GUM,
    IFA,
    create_upsampler,
    criss_cross_attention,
    guided_sample,
)
from rtseg.upsample import gai as gai_module
from rtseg.upsample import gum as gum_module
from rtseg.upsample.gai import criss_cross_attention_blocked
from rtseg.upsample.ifa import SpatialEncoding

pytestmark = pytest.mark.usefixtures("one_thread")


def test_criss_cross_gradients():
    args = [torch.randn(1, 3, 4, 5, dtype=torch.double, requires_grad=True) for _ in range(2)]
    args.append(torch.randn(1, 2, 4, 5, dtype=torch.double, requires_grad=True))
    assert torch.autograd.gradcheck(criss_cross_attention, tuple(args))


def test_criss_cross_large_energies_stay_finite():
    # energies of ±1e3: a naive exp overflows; the shared maximum keeps the softmax finite
    q, k = 30 * torch.randn(1, 4, 6, 7), 30 * torch.randn(1, 4, 6, 7)
    out = criss_cross_attention(q, k, torch.randn(1, 3, 6, 7))
    assert torch.isfinite(out).all()


def test_gum_grid_cache_hit_and_autograd_after_inference_mode():
    gum_module.clear_grid_cache()
    coarse, off = torch.randn(1, 2, 4, 5), 0.3 * torch.randn(1, 2, 8, 10)
    with torch.inference_mode():
        first = guided_sample(coarse, off)
    assert len(gum_module._GRID_CACHE) == 1
    (grid, _), = gum_module._GRID_CACHE.values()
    # the entry made under inference_mode serves a later call that needs gradients
    off_g = off.clone().requires_grad_()
    second = guided_sample(coarse, off_g)
    second.sum().backward()
    assert off_g.grad is not None and len(gum_module._GRID_CACHE) == 1
    assert next(iter(gum_module._GRID_CACHE.values()))[0] is grid
    torch.testing.assert_close(first, second.detach())


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::torch.jit.TracerWarning")
def test_gum_cache_bounded_and_off_while_tracing(tmp_path):
    gum_module.clear_grid_cache()
    for n in range(2, 10):
        guided_sample(torch.randn(1, 1, 3, 3), torch.zeros(1, 2, n, n))
    assert len(gum_module._GRID_CACHE) == gum_module._GRID_CACHE_SIZE
    gum_module.clear_grid_cache()
    model = rtseg.create_model("gun", 3, aux=False).eval()
    export_onnx(model, tmp_path / "gun.onnx", (64, 96))
    torch.jit.trace(model, torch.randn(1, 3, 64, 96), check_trace=False)
    assert len(gum_module._GRID_CACHE) == 0


def test_guided_sample_half_positions_in_float32():
    # 2048 columns: fp16 cannot tell neighbouring cell centres apart near ±1; fp32 can
    coarse = torch.randn(1, 1, 2, 256)
    off = torch.zeros(1, 2, 2, 2048)
    ref = F.interpolate(coarse, (2, 2048), mode="bilinear", align_corners=False)
    out = guided_sample(coarse.half(), off.half())
    assert out.dtype == torch.float16
    torch.testing.assert_close(out.float(), ref, atol=2e-3, rtol=2e-3)


# --- inference fast paths (issue 19): each equals its reference path, and is the one that runs

def _randomise(module: torch.nn.Module) -> torch.nn.Module:
    """Random BN statistics/affines, non-zero GAI γ, GUM offsets and IFA frequencies: a fast
    path that forgot a term (a folded BN, the γ, the offsets) then differs."""
    g = torch.Generator().manual_seed(0)
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g))
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.randn(m.num_features, generator=g))
            m.bias.data.copy_(torch.randn(m.num_features, generator=g))
        if isinstance(getattr(m, "gamma", None), torch.nn.Parameter):
            m.gamma.data.fill_(0.7)
        if isinstance(m, GUM):
            m.offset.weight.data.copy_(0.05 * torch.randn(m.offset.weight.shape, generator=g))
        if isinstance(m, SpatialEncoding):
            m.freqs.data.add_(torch.randn(m.freqs.shape, generator=g))
    return module.eval()


def _spy_linear(mp: pytest.MonkeyPatch) -> list[bool]:
    """Record every ``F.linear`` call (whether inference mode was on) in the returned list.

    The fast paths run their 1×1 layers as ``F.linear`` GEMMs and the plain formulas never
    call it: the calls prove which path ran."""
    calls: list[bool] = []
    linear = F.linear

    def spy(*args, **kwargs):
        calls.append(torch.is_inference_mode_enabled())
        return linear(*args, **kwargs)

    mp.setattr(F, "linear", spy)
    return calls


def _fast_and_reference(module, *inputs):
    """(inference-mode output, grad-enabled output): the fast path and the plain formula."""
    with pytest.MonkeyPatch.context() as mp:
        calls = _spy_linear(mp)
        with torch.inference_mode():
            fast = module(*inputs)
        ref = module(*inputs).detach()
    assert calls and all(calls), "the fast path did not run, or the reference used it"
    return fast, ref


@pytest.mark.parametrize("size", [(2, 5, 7), (1, 1, 6), (1, 6, 1), (2, 9, 11)])
def test_blocked_criss_cross_equals_reference_across_blocks(monkeypatch, size):
    b, h, w = size
    q, k = torch.randn(b, 3, h, w).double(), torch.randn(b, 3, h, w).double()
    v = torch.randn(b, 4, h, w).double()
    monkeypatch.setattr(gai_module, "_BLOCK_ENERGIES", 2 * max(h, w) ** 2)  # several blocks
    torch.testing.assert_close(criss_cross_attention_blocked(q, k, v),
                               criss_cross_attention(q, k, v))


def test_blocked_criss_cross_large_energies_stay_finite():
    q, k = 30 * torch.randn(1, 4, 6, 7), 30 * torch.randn(1, 4, 6, 7)
    v = torch.randn(1, 3, 6, 7)
    out = criss_cross_attention_blocked(q, k, v)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, criss_cross_attention(q, k, v), atol=1e-4, rtol=1e-4)


def test_blocked_criss_cross_is_not_slowed_by_a_peaked_attention():
    # energies spread far past 87 put most exponentials in float32's subnormal range, where
    # exp() and the product that reads them run an order of magnitude slower on x86 (12× for
    # this block before the clamp); the clamp at max − 80 keeps every weight normal
    import time

    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, 64, 128, 8, generator=g), torch.randn(1, 64, 128, 8, generator=g)
    v = torch.randn(1, 64, 128, 16, generator=g)

    def fastest(scale: float) -> float:
        times = []
        for _ in range(5):
            start = time.perf_counter()
            gai_module.criss_cross_rows(scale * q, scale * k, v)
            times.append(time.perf_counter() - start)
        return min(times)

    fastest(1.0)
    assert fastest(3.0) < 4 * fastest(1.0)


@pytest.mark.parametrize("scale, own, size", [(30.0, 0.0, (6, 7)), (1.0, 40.0, (6, 7)),
                                              (1.0, 0.0, (1, 7)), (1.0, 0.0, (6, 1))])
def test_exported_criss_cross_large_or_self_dominated_energies(scale, own, size):
    # the exported form merges a row and a column softmax (both with the pixel's own key),
    # leaving the own value out of the column's product and its weight out of the denominator:
    # exact when energies are large (±1e3), when the own energy dominates its column (nearly
    # all of the column's weight is then taken off), and for a single row or column
    q, k = (scale * torch.randn(2, *size, 4).double() for _ in range(2))
    k = k + own * q / q.norm(dim=-1, keepdim=True)  # q·k grows by own·|q| at the own position
    v = torch.randn(2, *size, 3).double()
    out = gai_module.criss_cross_lines(q, q.transpose(1, 2), k, v)
    ref = criss_cross_attention(*(t.permute(0, 3, 1, 2) for t in (q, k, v))).permute(0, 2, 3, 1)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, ref, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", ["bilinear", "gai", "fast_attention", "gum"])
def test_pairwise_fast_path_equals_reference_and_runs(name):
    up = _randomise(create_upsampler(name, 8, 8, 8))
    coarse, fine = torch.randn(2, 8, 5, 6), torch.randn(2, 8, 10, 12)
    fast, ref = _fast_and_reference(up, coarse, fine)
    torch.testing.assert_close(fast, ref, atol=1e-4, rtol=1e-4)


def test_fast_paths_stay_off_in_training_mode():
    # BN uses batch statistics in training mode: no folding, even without gradients
    up = _randomise(create_upsampler("gai", 8, 8, 8)).train()
    coarse, fine = torch.randn(2, 8, 5, 6), torch.randn(2, 8, 10, 12)
    with torch.no_grad():
        out = up(coarse, fine)
    assert out.is_contiguous()  # the fast path returns channels-last rows
    torch.testing.assert_close(out, up(coarse, fine).detach())


@pytest.mark.parametrize("size", [(16, 24), (32, 48), (33, 17), (15, 21)])
def test_ifa_fast_path_equals_reference(size):
    # (16, 24), (32, 48): every level divides the output (broadcast adds, 8×8 position
    # table); (33, 17) and (15, 21): uneven levels (gathers, table of distinct offsets)
    ifa = _randomise(IFA([3, 4, 5, 6], 7, hidden=(8, 7, 6))).double()
    feats = [torch.randn(2, c, math.ceil(16 / 2**i), math.ceil(24 / 2**i)).double()
             for i, c in enumerate([3, 4, 5, 6])]
    if size == (15, 21):
        feats = [torch.randn(2, c, math.ceil(15 / 2**i), math.ceil(21 / 2**i)).double()
                 for i, c in enumerate([3, 4, 5, 6])]
    fast, ref = _fast_and_reference(ifa, feats, size)
    torch.testing.assert_close(fast, ref)


@pytest.mark.parametrize("name", ["fpn_r18_gai", "fpn_r18_ifa", "gain_r18", "ifa_r18",
                                  "fanet18"])
def test_whole_networks_fast_path_equals_reference(name):
    model = _randomise(rtseg.create_model(name, 5, aux=False))
    x = torch.randn(1, 3, 64, 96)
    fast, ref = _fast_and_reference(model, x)
    torch.testing.assert_close(fast, ref, atol=1e-4, rtol=1e-4)


def test_pointwise_folds_batchnorm_and_rejects_other_layers():
    layer = _randomise(ConvBNAct(6, 5, 1, act="leaky"))
    a, b = torch.randn(2, 3, 4, 2), torch.randn(2, 3, 4, 4)
    out = pointwise([a, b], layer)
    ref = layer(torch.cat([a, b], -1).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="1×1"):
        pointwise([a], ConvBNAct(2, 5, 3))
    with pytest.raises(ValueError, match="parts have 2 channels"):
        pointwise([a], layer)


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::torch.jit.TracerWarning")
def test_export_records_no_eager_only_path(tmp_path):
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is an optional extra")
    model = _randomise(rtseg.create_model("fpn_r18_gai", 5, aux=False))
    x = torch.randn(1, 3, 64, 96)
    path = export_onnx(model, tmp_path / "gai.onnx", (64, 96))
    graph = {n.op_type for n in __import__("onnx").load(str(path)).graph.node}
    assert "Loop" not in graph  # the export-safe formula (tests/test_export_fast.py), no loop
    with torch.inference_mode():
        eager = model(x).numpy()
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    assert abs(got - eager).max() < 1e-3


def test_reference_paths_turns_the_fast_paths_off(monkeypatch):
    up = _randomise(create_upsampler("gai", 8, 8, 8))
    coarse, fine = torch.randn(1, 8, 5, 6), torch.randn(1, 8, 10, 12)
    calls = _spy_linear(monkeypatch)
    with torch.inference_mode():
        with reference_paths():
            ref = up(coarse, fine)
        assert not calls
        fast = up(coarse, fine)  # on again after the block
    assert calls
    torch.testing.assert_close(fast, ref, atol=1e-4, rtol=1e-4)
    row = rtseg.bench.run_benchmark(["fpn_r18_bilinear"], size=(32, 32), device="cpu",
                                    warmup=1, iters=1, reference=False, reference_paths=True)
    assert row["settings"]["reference_paths"] is True


def test_fast_paths_under_torch_compile_equal_the_reference(monkeypatch):
    # torch.compile takes the eager fast paths (an export does not: test_export_records_...);
    # only they call F.linear, which dynamo traces through the spy
    calls = _spy_linear(monkeypatch)
    ifa = _randomise(IFA([3, 4], 5, hidden=(6,)))
    feats = [torch.randn(1, 3, 8, 12), torch.randn(1, 4, 4, 6)]
    compiled = torch.compile(ifa)
    with torch.inference_mode():
        fast = compiled(feats, (16, 24))
    assert calls
    torch.testing.assert_close(fast, ifa(feats, (16, 24)).detach(), atol=1e-4, rtol=1e-4)


def test_temporal_fanet_fast_path_equals_reference_on_a_clip():
    model = _randomise(rtseg.create_model("fanet18_temp", 5, aux=False))
    clip = torch.randn(1, 3, 3, 64, 96)  # the last frame attends over itself and two past
    fast, ref = _fast_and_reference(model, clip)
    torch.testing.assert_close(fast, ref, atol=1e-4, rtol=1e-4)
