"""The reassembly kernels of CARAFE, FADE and SAPA (rtseg.upsample.reassembly) against slow
per-pixel references: forward, the recomputing backward, the inference phase path (issue 28)."""

import pytest
import torch

from rtseg.layers import export_paths, reference_paths, static_sizes
from rtseg.upsample import create_upsampler, reassembly
from rtseg.upsample.reassembly import (
    reassemble,
    reassemble_plain,
    window_similarity,
    window_similarity_plain,
)
from tests.upsample_loops import COARSE, FINE_SIZES, loop_reassemble, loop_similarity


@pytest.mark.parametrize("size", FINE_SIZES)
@pytest.mark.parametrize("k", [3, 5])
def test_reassembly_and_similarity_match_per_pixel_loops(size, k):
    value, key = torch.randn(2, 3, *COARSE).double(), torch.randn(2, 4, *COARSE).double()
    weights, query = torch.randn(2, k * k, *size).double(), torch.randn(2, 4, *size).double()
    ref_r, ref_s = loop_reassemble(value, weights, k), loop_similarity(query, key, k)
    torch.testing.assert_close(reassemble_plain(value, weights, k), ref_r)
    torch.testing.assert_close(window_similarity_plain(query, key, k), ref_s)
    with torch.no_grad():  # the in-place inference variant
        torch.testing.assert_close(reassemble(value, weights, k), ref_r)


@pytest.mark.parametrize("coarse,size", [((4, 5), (7, 9)), ((4, 5), (8, 10)), ((3, 4), (9, 12)),
                                         ((4, 5), (4, 10)), ((1, 1), (2, 2))])
@pytest.mark.parametrize("k", [3, 5])
def test_recomputing_backward_equals_autograd(monkeypatch, coarse, size, k):
    # exact multiples take the training phase path (forward and backward in phase form), the
    # odd size the recomputing gather loop; both against autograd through the plain loop
    value = torch.randn(2, 3, *coarse, dtype=torch.double, requires_grad=True)
    weights = torch.randn(2, k * k, *size, dtype=torch.double, requires_grad=True)
    query = torch.randn(2, 4, *size, dtype=torch.double, requires_grad=True)
    key = torch.randn(2, 4, *coarse, dtype=torch.double, requires_grad=True)
    calls = _spy_phases(monkeypatch)
    for fast, plain, args in [(reassemble, reassemble_plain, (value, weights)),
                              (window_similarity, window_similarity_plain, (query, key))]:
        out = fast(*args, k)
        g = torch.randn(out.shape, dtype=torch.double)
        ref = torch.autograd.grad(plain(*args, k), args, g)
        torch.testing.assert_close(torch.autograd.grad(out, args, g), ref)
    phased = ["_reassemble_phases", "_similarity_phases", "_scatter_phases",  # reassembly
              "_similarity_phases", "_reassemble_phases", "_scatter_phases"]  # similarity
    assert calls == (phased if size != (7, 9) else [])


@pytest.mark.parametrize("coarse,fine", [((2, 3), (3, 5)), ((2, 3), (4, 6)), ((2, 2), (6, 4))])
def test_recomputing_backward_gradcheck(coarse, fine):
    # (3, 5): the gather loop; (4, 6), (6, 4): the phase path (s = 2; s_y = 3, s_x = 2)
    def t(*shape):
        return torch.randn(*shape, dtype=torch.double, requires_grad=True)

    def re(v, w):
        return reassemble(v, w, 3)

    def sim(q, k):
        return window_similarity(q, k, 3)

    for fn, args in [(re, (t(1, 2, *coarse), t(1, 9, *fine))),
                     (sim, (t(1, 2, *fine), t(1, 2, *coarse)))]:
        assert torch.autograd.gradcheck(fn, args)
        assert torch.autograd.gradgradcheck(fn, args)  # create_graph: the gather loop's backward


@pytest.mark.parametrize("fine", [(12, 14), (11, 13)])  # the phase path, the gather loop
def test_reassembly_saves_only_its_inputs_for_backward(fine):
    # no k²·C·H·W tensor of taps is kept: the saved tensors are the value and the kernels
    value = torch.randn(1, 16, 6, 7, requires_grad=True)
    weights = torch.randn(1, 25, *fine, requires_grad=True)
    query = torch.randn(1, 8, *fine, requires_grad=True)
    key = torch.randn(1, 8, 6, 7, requires_grad=True)
    saved: list[int] = []
    for fn, args in [(reassemble, (value, weights)), (window_similarity, (query, key))]:
        saved.clear()
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t,
                                                      lambda t: t):
            fn(*args, 5)
        assert sum(saved) == sum(a.numel() for a in args)


# --- the inference phase path (H = s_y·h, W = s_x·w) ----------------------------------------


def _spy_phases(mp: pytest.MonkeyPatch) -> list[str]:
    """Record the calls of the phase-path functions (by name) in the returned list."""
    calls: list[str] = []
    for name in ("_reassemble_phases", "_similarity_phases", "_scatter_phases"):
        fn = getattr(reassembly, name)
        mp.setattr(reassembly, name, lambda *a, _fn=fn, _n=name: calls.append(_n) or _fn(*a))
    return calls


# (coarse, fine): s = 2, s = 3, s_y ≠ s_x, s = 1, a 1×1 coarse map, odd (no phase path)
PHASE_SIZES = [((4, 5), (8, 10)), ((3, 4), (9, 12)), ((4, 5), (4, 10)), ((5, 6), (5, 6)),
               ((1, 1), (2, 2)), ((8, 7), (16, 14))]
PLAIN_SIZES = [((4, 5), (7, 9)), ((4, 5), (9, 11)), ((5, 3), (10, 7))]


@pytest.mark.parametrize("coarse,fine", PHASE_SIZES + PLAIN_SIZES)
@pytest.mark.parametrize("k", [3, 5])
def test_inference_paths_match_per_pixel_loops(monkeypatch, coarse, fine, k):
    torch.manual_seed(0)
    value, key = torch.randn(2, 7, *coarse), torch.randn(2, 4, *coarse)
    weights = torch.softmax(torch.randn(2, k * k, *fine), 1)
    query = torch.randn(2, 4, *fine)
    ref_r = loop_reassemble(value.double(), weights.double(), k).float()
    ref_s = loop_similarity(query.double(), key.double(), k).float()
    calls = _spy_phases(monkeypatch)
    with torch.inference_mode():
        out_r, out_s = reassemble(value, weights, k), window_similarity(query, key, k)
    phased = (coarse, fine) in PHASE_SIZES
    assert calls == (["_reassemble_phases", "_similarity_phases"] if phased else [])
    torch.testing.assert_close(out_r, ref_r, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out_s, ref_s, atol=1e-5, rtol=1e-5)
    assert out_r.is_contiguous() and out_s.is_contiguous()
    # channels-last inputs (SAPA's queries and keys are): the same values, channels-last out
    cl = {"memory_format": torch.channels_last}
    with torch.no_grad():
        out_r = reassemble(value.contiguous(**cl), weights.contiguous(**cl), k)
        out_s = window_similarity(query.contiguous(**cl), key.contiguous(**cl), k)
    torch.testing.assert_close(out_r, ref_r, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out_s, ref_s, atol=1e-5, rtol=1e-5)
    if phased and value.shape[1] > 1 and coarse != (1, 1):
        assert out_r.is_contiguous(**cl) and not out_r.is_contiguous()


@pytest.mark.parametrize("coarse,fine", PHASE_SIZES + PLAIN_SIZES)
def test_static_size_graphs_record_the_phase_slices(monkeypatch, coarse, fine):
    # what export_onnx(dynamic=False) records: the out-of-place phase formula where the sizes
    # are exact multiples, the gather loop elsewhere; equal to the per-pixel loops either way
    calls: list[str] = []
    for name in ("_reassemble_phase_slices", "_similarity_phase_slices"):
        fn = getattr(reassembly, name)
        monkeypatch.setattr(reassembly, name,
                            lambda *a, _fn=fn, _n=name: calls.append(_n) or _fn(*a))
    torch.manual_seed(1)
    value, key = torch.randn(2, 7, *coarse), torch.randn(2, 4, *coarse)
    query = torch.randn(2, 4, *fine)
    weights = torch.softmax(torch.randn(2, 9, *fine), 1)
    with torch.no_grad(), export_paths(), static_sizes():
        out_r, out_s = reassemble(value, weights, 3), window_similarity(query, key, 3)
    phased = (coarse, fine) in PHASE_SIZES
    assert calls == (["_reassemble_phase_slices", "_similarity_phase_slices"] if phased else [])
    torch.testing.assert_close(out_r, loop_reassemble(value.double(), weights.double(), 3).float(),
                               atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out_s, loop_similarity(query.double(), key.double(), 3).float(),
                               atol=1e-5, rtol=1e-5)
    calls.clear()
    with torch.no_grad(), export_paths():  # a graph for every size: never
        reassemble(value, weights, 3)
    assert calls == []


def test_phase_paths_with_gradients_and_off_for_reference_paths_and_tracing(monkeypatch):
    calls = _spy_phases(monkeypatch)
    value = torch.randn(1, 3, 4, 5, requires_grad=True)
    weights = torch.randn(1, 9, 8, 10)
    reassemble(value, weights, 3).sum().backward()  # training: the phase path, both ways
    assert calls == ["_reassemble_phases", "_scatter_phases"]  # no kernel gradient wanted
    calls.clear()
    reassemble(value, torch.randn(1, 9, 7, 9), 3).sum().backward()  # odd: the gather loop
    with reference_paths():
        reassemble(value, weights, 3).sum().backward()
        with torch.no_grad():
            reassemble(value, weights, 3)
    with export_paths():
        reassemble(value, weights, 3).sum().backward()
    traced = torch.jit.trace(lambda v, w: reassemble(v, w, 3), (value, weights),
                             check_trace=False)
    assert calls == []
    with torch.no_grad():
        torch.testing.assert_close(traced(value, weights), reassemble(value, weights, 3))
    assert calls == ["_reassemble_phases"]


def _perturbed(name: str, channels: int = 6) -> torch.nn.Module:
    up = create_upsampler(name, channels, channels, channels)
    with torch.no_grad():  # kernels away from the near-uniform initialisation
        for p in up.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return up


def _forward_and_grads(up, x, f):
    """Output and gradients wrt both inputs and every parameter under a random output grad
    (None for CARAFE's ``fine``, read only for its size)."""
    x, f = x.clone().requires_grad_(), f.clone().requires_grad_()
    out = up(x, f)
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=out.dtype)
    return out.detach(), torch.autograd.grad(out, [x, f, *up.parameters()], g, allow_unused=True)


@pytest.mark.parametrize("name", ["carafe", "fade", "sapa"])
@pytest.mark.parametrize("coarse,fine", [((4, 5), (8, 10)), ((6, 7), (12, 14)), ((4, 5), (9, 11))])
@pytest.mark.parametrize("channels_last", [False, True])
def test_upsamplers_training_equals_the_plain_formula(monkeypatch, name, coarse, fine,
                                                      channels_last):
    # train mode: the forward and the gradients wrt the coarse and fine features and every
    # parameter (the kernel logits' path) of the training phase path against the plain one
    torch.manual_seed(0)
    up = _perturbed(name).train()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(2, 6, *coarse).contiguous(memory_format=fmt)
    f = torch.randn(2, 6, *fine).contiguous(memory_format=fmt)
    exact = fine == (2 * coarse[0], 2 * coarse[1])
    for dtype in (torch.float32, torch.float64):
        up, x, f = up.to(dtype), x.to(dtype), f.to(dtype)
        calls = _spy_phases(monkeypatch)
        with reference_paths():
            ref, ref_grads = _forward_and_grads(up, x, f)
        assert calls == []
        out, grads = _forward_and_grads(up, x, f)
        assert ("_scatter_phases" in calls) == exact
        if exact and name == "sapa":  # the similarity and the reassembly, both ways
            assert sorted(set(calls)) == ["_reassemble_phases", "_scatter_phases",
                                          "_similarity_phases"]
            assert calls.count("_scatter_phases") == 2
        # float32: 1e-5 of each gradient's scale (parameter gradients, sums over every pixel,
        # reach ~30 here; the plain path's own float32 error then exceeds 1e-5 absolute)
        tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {}
        torch.testing.assert_close(out, ref, **tol)
        assert (grads[1] is None) == (ref_grads[1] is None) == (name == "carafe")
        for g, r in zip(grads, ref_grads):
            if r is not None:
                scale = {"atol": 1e-5 * max(1.0, r.abs().max().item())} if tol else {}
                torch.testing.assert_close(g, r, **{**tol, **scale})


def test_kernel_logit_gradients_equal_the_plain_formula(monkeypatch):
    torch.manual_seed(0)
    value = torch.randn(2, 16, 6, 7, requires_grad=True)
    logits = (3 * torch.randn(2, 25, 12, 14)).requires_grad_()
    key = torch.randn(2, 8, 6, 7, requires_grad=True)
    query = torch.randn(2, 8, 12, 14, requires_grad=True)
    g = torch.randn(2, 16, 12, 14)

    def run():
        out = reassemble(value, torch.softmax(logits + window_similarity(query, key, 5), 1), 5)
        return out, *torch.autograd.grad(out, (value, logits, query, key), g)

    with reference_paths():
        ref = run()
    calls = _spy_phases(monkeypatch)
    for a, b in zip(run(), ref):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert calls.count("_scatter_phases") == 2


@pytest.mark.parametrize("name", ["carafe", "fade", "sapa"])
@pytest.mark.parametrize("coarse,fine", [((4, 5), (8, 10)), ((6, 7), (12, 14)), ((4, 5), (9, 11))])
def test_upsamplers_inference_equals_the_plain_formula(monkeypatch, name, coarse, fine):
    torch.manual_seed(0)
    up = _perturbed(name).eval()
    x, f = torch.randn(2, 6, *coarse), torch.randn(2, 6, *fine)
    with torch.no_grad(), reference_paths():
        ref = up(x, f)
    calls = _spy_phases(monkeypatch)
    with torch.inference_mode():
        fast = up(x, f)
    assert bool(calls) == (fine == (2 * coarse[0], 2 * coarse[1]))
    torch.testing.assert_close(fast, ref, atol=1e-5, rtol=1e-5)


