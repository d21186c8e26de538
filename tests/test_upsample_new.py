"""DySample, CARAFE, FADE (+Lite) and SAPA against slow per-pixel references (issue 28)."""

import math

import pytest
import torch
import torch.nn.functional as F

from rtseg.complexity import count_call_macs, count_params
from rtseg.layers import export_paths, reference_paths, static_sizes
from rtseg.upsample import CARAFE, FADE, SAPA, DySample, create_upsampler, reassembly
from rtseg.upsample.reassembly import (
    reassemble,
    reassemble_plain,
    window_similarity,
    window_similarity_plain,
)

COARSE = (4, 5)
FINE_SIZES = [(7, 9), (8, 10), (9, 11)]  # 2h − 1 (ResNet), 2h, 2h + 1 (EfficientNet-Lite)


def src(i: int, out_len: int, in_len: int) -> int:
    """The coarse cell containing the centre of output cell i."""
    return min(math.floor((i + 0.5) * in_len / out_len), in_len - 1)


def loop_reassemble(value, weights, k):
    """out(i, j) = Σ_{a,b} w_{a·k+b}(i, j) · value(u_i + a − r, v_j + b − r), zero outside."""
    b, c, h, w = value.shape
    big_h, big_w = weights.shape[-2:]
    r = k // 2
    out = torch.zeros(b, c, big_h, big_w, dtype=value.dtype)
    for i in range(big_h):
        for j in range(big_w):
            u, v = src(i, big_h, h), src(j, big_w, w)
            for a in range(k):
                for bb in range(k):
                    y, x = u + a - r, v + bb - r
                    if 0 <= y < h and 0 <= x < w:
                        out[:, :, i, j] += weights[:, a * k + bb, i, j, None] * value[:, :, y, x]
    return out


def loop_similarity(query, key, k):
    """logit_t(i, j) = query(i, j) · key(window tap t around the source cell), 0 outside."""
    b, _, big_h, big_w = query.shape
    h, w = key.shape[-2:]
    r = k // 2
    out = torch.zeros(b, k * k, big_h, big_w, dtype=query.dtype)
    for i in range(big_h):
        for j in range(big_w):
            u, v = src(i, big_h, h), src(j, big_w, w)
            for a in range(k):
                for bb in range(k):
                    y, x = u + a - r, v + bb - r
                    if 0 <= y < h and 0 <= x < w:
                        out[:, a * k + bb, i, j] = (query[:, :, i, j] * key[:, :, y, x]).sum(1)
    return out


def bilinear_border(x, py, px):
    """x (B×C×h×w) at the continuous position (py, px) in cell-index units, border clamped."""
    h, w = x.shape[-2:]
    py, px = min(max(py, 0.0), h - 1.0), min(max(px, 0.0), w - 1.0)
    y0, x0 = math.floor(py), math.floor(px)
    y1, x1 = min(y0 + 1, h - 1), min(x0 + 1, w - 1)
    fy, fx = py - y0, px - x0
    return ((1 - fy) * ((1 - fx) * x[:, :, y0, x0] + fx * x[:, :, y0, x1])
            + fy * ((1 - fx) * x[:, :, y1, x0] + fx * x[:, :, y1, x1]))


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


# --- DySample -------------------------------------------------------------------------------


def loop_dysample(dys: DySample, x: torch.Tensor) -> torch.Tensor:
    """The official formulation at H = 2h, one output pixel and group at a time: the conv output
    read in its [x/y][group][sub-pixel] layout (``lp``), 0.25 scope, bilinear at the cell
    centre plus the offset, border padding."""
    b, c, h, w = x.shape
    s, g = dys.scale, dys.groups
    o = dys.offset(x) * 0.25
    out = torch.zeros(b, c, s * h, s * w, dtype=x.dtype)
    cg = c // g
    for i in range(s * h):
        for j in range(s * w):
            sub = (i % s) * s + j % s
            for gi in range(g):
                dx = o[:, gi * s * s + sub, i // s, j // s]
                dy = o[:, (g + gi) * s * s + sub, i // s, j // s]
                for bi in range(b):
                    py = (i + 0.5) / s - 0.5 + float(dy[bi])
                    px = (j + 0.5) / s - 0.5 + float(dx[bi])
                    xs = x[bi:bi + 1, gi * cg:(gi + 1) * cg]
                    out[bi, gi * cg:(gi + 1) * cg, i, j] = bilinear_border(xs, py, px)[0]
    return out


def test_dysample_lp_matches_per_pixel_loop():
    torch.manual_seed(0)
    dys = DySample(8, 8, groups=2).double()
    torch.nn.init.normal_(dys.offset.weight, 0, 1.0)  # offsets of a few coarse pixels
    x = torch.randn(2, 8, 3, 4).double()
    torch.testing.assert_close(dys(x, torch.zeros(2, 8, 6, 8)), loop_dysample(dys, x))


@pytest.mark.parametrize("size", FINE_SIZES)
@pytest.mark.parametrize("style,dyscope", [("lp", False), ("lp", True), ("pl", False),
                                           ("pl", True)])
def test_dysample_zero_offsets_is_bilinear(size, style, dyscope):
    dys = DySample(8, 8, style=style, dyscope=dyscope)
    x = torch.randn(2, 8, *COARSE)
    ref = F.interpolate(x, size, mode="bilinear", align_corners=False)
    # the official initialisation (N(0, 0.001²) offsets) is bilinear up to ~1e-3 pixels
    torch.testing.assert_close(dys(x, torch.zeros(2, 1, *size)), ref, atol=0.02, rtol=0)
    torch.nn.init.zeros_(dys.offset.weight)
    torch.testing.assert_close(dys(x, torch.zeros(2, 1, *size)), ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("style", ["lp", "pl"])
def test_dysample_dynamic_scope_starts_at_the_static_one(style):
    static, dynamic = DySample(8, 8, style=style), DySample(8, 8, style=style, dyscope=True)
    dynamic.offset.load_state_dict(static.offset.state_dict())
    with torch.no_grad():
        static.offset.weight.mul_(500)  # visible offsets
        dynamic.offset.weight.mul_(500)
    x = torch.randn(1, 8, *COARSE)
    torch.testing.assert_close(dynamic(x, x.new_zeros(1, 1, 8, 10)),
                               static(x, x.new_zeros(1, 1, 8, 10)))
    with torch.no_grad():
        dynamic.scope.weight.normal_(0, 1)
    assert not torch.allclose(dynamic(x, x.new_zeros(1, 1, 8, 10)),
                              static(x, x.new_zeros(1, 1, 8, 10)))


def test_dysample_pl_offsets_come_from_the_shuffled_map():
    dys = DySample(8, 8, style="pl", groups=2)
    x = torch.randn(1, 8, *COARSE)
    o = dys.offset(F.pixel_shuffle(x, 2)) * 0.25  # 1×(2·g)×8×10, [x/y][group]
    ref = torch.stack([o[:, [0, 1]], o[:, [2, 3]]], 2).flatten(0, 1)  # group-major, (dx, dy)
    torch.testing.assert_close(dys.offsets(x), ref)


# --- CARAFE ---------------------------------------------------------------------------------


def test_carafe_kernels_are_the_pixel_shuffled_encoder_output():
    car = CARAFE(6, 6, k_up=3)
    torch.nn.init.normal_(car.encode.weight, 0, 0.1)
    x = torch.randn(1, 6, *COARSE)
    enc = car.encode(car.compress(x))  # 1×(9·4)×h×w, channel t·s² + sub-pixel
    k = car.kernels(x, (8, 10))
    for i, j in [(0, 0), (3, 6), (7, 9), (4, 1)]:
        sub = (i % 2) * 2 + j % 2
        logits = enc[0, [t * 4 + sub for t in range(9)], i // 2, j // 2]
        torch.testing.assert_close(k[0, :, i, j], torch.softmax(logits, 0))


@pytest.mark.parametrize("size", FINE_SIZES)
def test_carafe_matches_loop_and_starts_as_a_box_filter(size):
    car = CARAFE(6, 3).double()
    x = torch.randn(2, 6, *COARSE).double()
    fine = torch.zeros(2, 3, *size).double()
    out = car(x, fine)
    torch.testing.assert_close(out, loop_reassemble(x, car.kernels(x, size), 5))
    torch.nn.init.zeros_(car.encode.weight)  # uniform kernels: the 5×5 mean, zero padded
    box = F.avg_pool2d(x, 5, stride=1, padding=2, count_include_pad=True)
    iy = torch.tensor([src(i, size[0], COARSE[0]) for i in range(size[0])])
    ix = torch.tensor([src(j, size[1], COARSE[1]) for j in range(size[1])])
    torch.testing.assert_close(car(x, fine), box[:, :, iy][:, :, :, ix])


# --- FADE -----------------------------------------------------------------------------------


@pytest.mark.parametrize("size,lite", [(size, False) for size in FINE_SIZES] + [((9, 11), True)])
def test_fade_matches_per_pixel_loop(size, lite):
    fade = FADE(6, 6, lite=lite).double()
    x, f = torch.randn(2, 6, *COARSE).double(), torch.randn(2, 6, *size).double()
    enc_f = fade.encode(fade.compress_fine(f))
    enc_c = fade.encode(fade.compress_coarse(x))
    gate_c = fade.gate(x)
    kern = torch.zeros(2, 25, *size).double()
    gate = torch.zeros(2, 1, *size).double()
    for i in range(size[0]):
        for j in range(size[1]):
            u, v = src(i, size[0], COARSE[0]), src(j, size[1], COARSE[1])
            kern[:, :, i, j] = torch.softmax(enc_f[:, :, i, j] + enc_c[:, :, u, v], 1)
            gate[:, :, i, j] = torch.sigmoid(gate_c[:, :, u, v])
    ref = gate * f + (1 - gate) * loop_reassemble(x, kern, 5)
    torch.testing.assert_close(fade(x, f), ref)


# --- SAPA -----------------------------------------------------------------------------------


@pytest.mark.parametrize("size", FINE_SIZES)
def test_sapa_matches_per_pixel_windowed_attention(size):
    sapa = SAPA(6, 5, embedding=4).double()
    with torch.no_grad():  # non-trivial norms and biases
        for p in sapa.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x, f = torch.randn(2, 6, *COARSE).double(), torch.randn(2, 5, *size).double()
    q = sapa.query(F.layer_norm(f.permute(0, 2, 3, 1), (5,), sapa.norm_fine.weight,
                                sapa.norm_fine.bias)).permute(0, 3, 1, 2)
    kk = sapa.key(F.layer_norm(x.permute(0, 2, 3, 1), (6,), sapa.norm_coarse.weight,
                               sapa.norm_coarse.bias)).permute(0, 3, 1, 2)
    attn = torch.softmax(loop_similarity(q, kk, 5), 1)  # out-of-map taps: logit 0, value 0
    torch.testing.assert_close(sapa(x, f), loop_reassemble(x, attn, 5))


def test_sapa_output_depends_on_the_fine_guide():
    sapa = SAPA(6, 5)
    x = torch.randn(1, 6, *COARSE)
    f = torch.randn(1, 5, 8, 10)
    assert not torch.allclose(sapa(x, f), sapa(x, f.flip(-1)))


# --- interface, sizes, counts ---------------------------------------------------------------


def test_parameter_counts_at_the_defaults():
    c, d, k, s, g = 128, 64, 5, 2, 4
    expected = {
        "dysample": (c + 1) * 2 * g * s * s,
        "carafe": (c * d + d) + (d * k * k * s * s * 9 + k * k * s * s),
        "fade": (c + 1) + (c * d + d) + c * d + (d * k * k * 9 + k * k),
        "sapa": 2 * 2 * c + 2 * (c * d + d),
    }
    for name, n in expected.items():
        assert count_params(create_upsampler(name, c, c, c)) == n, name
    assert count_params(DySample(c, c, dyscope=True)) == expected["dysample"] + c * 2 * g * s * s
    assert count_params(DySample(c, c, style="pl")) == (c // 4 + 1) * 2 * g
    lite = (c + 1) + (c * k * k + k * k) + c * k * k + (k * k * 9 + k * k)
    assert count_params(create_upsampler("fade", c, c, c, lite=True)) == lite


def test_reassembly_macs_are_counted():
    c, h, w = 16, 6, 8
    up = CARAFE(c, c)
    macs = count_call_macs(lambda m, a, b: m(a, b), up, [(1, c, h, w), (1, c, 2 * h, 2 * w)])
    convs = c * 64 * h * w + 64 * 100 * 9 * h * w
    assert macs == convs + c * 25 * 4 * h * w


@pytest.mark.parametrize("name", ["dysample", "carafe", "fade", "sapa"])
def test_projection_and_channel_errors(name):
    with pytest.raises(ValueError, match="must equal"):
        create_upsampler(name, 8, 8, 16)
    if name == "fade":
        with pytest.raises(ValueError, match="fine_channels"):
            create_upsampler(name, 8, 4, 8)
    assert create_upsampler(name, 8, 8, 8)(torch.randn(1, 8, 3, 3),
                                           torch.randn(1, 8, 5, 7)).shape == (1, 8, 5, 7)
