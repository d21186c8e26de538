"""Window reassembly and windowed similarity: the k×k operations of CARAFE, FADE and SAPA.

Given B×C×h×w values and B×k²×H×W kernels, :func:`reassemble` gives B×C×H×W, each output pixel
the kernel-weighted sum of the k×k window around its source cell (zero outside the map);
:func:`window_similarity` gives the B×k²×H×W dot products of each query with its window's keys.

Neither ever builds the C·k²·H·W unfolded tensor. What runs when:

* **H = s_y·h and W = s_x·w** (every stride-2 step of an even-sized network, and every FPN
  level of a 320×320 training crop): the *phase path*, in inference and in training alike.
* **any other size pair** (odd inputs, 2h ± 1): the gather loop over the k² taps, one
  gathered B×C×H×W term each; with gradients its backward (:class:`_Reassemble`) recomputes
  the taps instead of storing them.
* **traced or exported graphs, and inside** :func:`rtseg.layers.reference_paths` (the tests'
  oracle): the plain gather loop at every size (the recomputing backward if gradients are
  wanted); except a graph recorded for one size (:func:`rtseg.layers.static_sizes`, what
  ``export_onnx(dynamic=False)`` records) at H = s_y·h, W = s_x·w: the phase formula out of
  place, a ``Slice``, ``Mul`` and ``Add`` per tap (:func:`_reassemble_phase_slices`).

Phase path: the source cell of output pixel (s_y·u + p, s_x·v + q) is (u, v) for every
sub-pixel phase (p, q), so tap (a, b) of all s_y·s_x phases is the *same* plain slice
``pad[u + a, v + b]`` of the zero-padded coarse map: no gather. In channels-last layout the
output, viewed as B×h×s_y×w×s_x×C, gets one broadcast multiply-add per tap
(:func:`_reassemble_phases`)::

    out[:, u, p, v, q, :] += K_t[:, u, p, v, q] · pad[:, u + a, v + b, :]     t = a·k + b

the slice broadcast over (p, q), the kernel over the C contiguous channels; the B×H×W×C result
is the interleaved output as it is (no pixel shuffle), returned in the input's memory format.
The windowed similarity does the same, each tap's products in one B×H×W×d buffer (reused),
summed over d (:func:`_similarity_phases`). Both compute the plain formulas' products and sums
(the similarity sums over d in another order: float rounding only).

Training at those sizes (:class:`_ReassemblePhases`, :class:`_WindowSimilarityPhases`): the
forward is the same phase loop and the backward is in phase form too, because the three
operations are each other's adjoints. With G = ∂L/∂out and ⟨·,·⟩ summed over everything::

    ⟨G, reassemble(v, K)⟩ = ⟨K, similarity(G, v)⟩  →  ∂L/∂K = similarity(G, v)
                                                      ∂L/∂v = scatter(G, K)
    ⟨g, similarity(q, κ)⟩                             →  ∂L/∂q = reassemble(κ, g)
                                                      ∂L/∂κ = scatter(q, g)

where scatter (:func:`_scatter_phases`) adds, per tap and phase, K_t[:, :, p, :, q] ·
G[:, :, p, :, q, :] into tap t's slice of a zero-padded B×(h+2r)×(w+2r)×C gradient (again a
plain slice, no ``index_add``). Saved for backward: only the two inputs (the values or keys,
alive anyway as the input of the kernel predictor; the kernels or queries, the softmax's own
saved output), as in the gather loop. Transient: forward, the padded copy of the coarse map
and the output (plus its NCHW copy for an NCHW input); backward, the incoming gradient in
channels-last (one B×C×H×W copy unless it already is), one B×H×W×C product buffer for the
similarity, the padded coarse gradient: a few B×C×H×W maps, as the gather loop's rows and
terms were (peak RSS of a training step measured no higher; docs/benchmarks.md). A double
backward (``create_graph=True``) falls back to the gather loop's differentiable backward.

Inference memory: the output, a copy of the padded coarse map and, for the similarity, one
B×H×W×d buffer.

rtseg's own code; the operations are CARAFE's (Wang et al., ICCV 2019; see
:mod:`rtseg.upsample.carafe`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F

from ..layers import (
    fast_formula,
    fast_inference,
    fast_training,
    sizes_are_static,
    tracing_or_exporting,
)
from .cells import source_cells


def _taps(x: torch.Tensor, size: tuple[int, int], k: int) -> Iterator[tuple[int, torch.Tensor]]:
    """Yield ``(t, term)`` for the k² taps: term = x at (u_i + a − r, v_j + b − r), zero outside.

    ``x`` B×C×h×w, term B×C×H×W, t = a·k + b (row-major over the window).
    """
    r = k // 2
    iy, ix = source_cells(size, tuple(x.shape[-2:]), x)
    pad = F.pad(x, (r, r, r, r))
    for a in range(k):
        rows = pad.index_select(2, iy + a)  # B×C×H×(w+2r)
        for b in range(k):
            yield a * k + b, rows.index_select(3, ix + b)


def _scatter_taps(
    terms: Callable[[int], torch.Tensor],
    shape: torch.Size,
    size: tuple[int, int],
    k: int,
    like: torch.Tensor,
) -> torch.Tensor:
    """Adjoint of :func:`_taps`: Σ_t scatter of term_t (B×C×H×W) back onto a B×C×h×w map."""
    r = k // 2
    b_, c, h, w = shape
    iy, ix = source_cells(size, (h, w), like)
    pad = like.new_zeros(b_, c, h + 2 * r, w + 2 * r)
    for a in range(k):
        rows = like.new_zeros(b_, c, size[0], w + 2 * r)
        for b in range(k):
            rows.index_add_(3, ix + b, terms(a * k + b))
        pad.index_add_(2, iy + a, rows)
    return pad[:, :, r:r + h, r:r + w]


def reassemble_plain(value: torch.Tensor, weights: torch.Tensor, k: int) -> torch.Tensor:
    """Σ_t weights[:, t] · tap_t(value): ``value`` B×C×h×w, ``weights`` B×k²×H×W → B×C×H×W."""
    size = (weights.shape[-2], weights.shape[-1])
    inplace = not torch.is_grad_enabled() and not tracing_or_exporting()
    out = None
    for t, term in _taps(value, size, k):
        w = weights[:, t:t + 1]
        if out is None:
            out = term * w
        elif inplace:
            out.addcmul_(term, w)
        else:
            out = out + term * w
    return out


def window_similarity_plain(query: torch.Tensor, key: torch.Tensor, k: int) -> torch.Tensor:
    """``query`` B×d×H×W · each of the k² keys around its source cell (``key`` B×d×h×w, zero
    outside the map) → B×k²×H×W logits."""
    size = (query.shape[-2], query.shape[-1])
    return torch.cat([(term * query).sum(1, keepdim=True) for _, term in _taps(key, size, k)], 1)


def _phases(size: tuple[int, int], in_size: tuple[int, int]) -> tuple[int, int] | None:
    """(s_y, s_x) when ``size`` is an exact integer multiple of ``in_size``, else None."""
    (big_h, big_w), (h, w) = size, in_size
    if h > 0 and w > 0 and big_h % h == 0 and big_w % w == 0 and big_h >= h and big_w >= w:
        return big_h // h, big_w // w
    return None


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    """The layout to return results in: channels-last for a channels-last ``x``."""
    if x.is_contiguous() or not x.is_contiguous(memory_format=torch.channels_last):
        return torch.contiguous_format
    return torch.channels_last


def _padded_rows(x: torch.Tensor, r: int) -> torch.Tensor:
    """B×C×h×w → the zero-padded map in channels-last order, B×(h+2r)×(w+2r)×C contiguous."""
    return F.pad(x, (r, r, r, r)).permute(0, 2, 3, 1).contiguous()


def _reassemble_phases(value: torch.Tensor, weights: torch.Tensor, k: int,
                       phases: tuple[int, int]) -> torch.Tensor:
    """:func:`reassemble_plain` at H = s_y·h, W = s_x·w (module docstring: the phase path)."""
    (sy, sx), r = phases, k // 2
    b, c, h, w = value.shape
    pad = _padded_rows(value, r)
    kern = weights.unflatten(2, (h, sy)).unflatten(4, (w, sx)).unsqueeze(-1)  # views
    res = torch.empty((b, c, h * sy, w * sx), dtype=torch.result_type(value, weights),
                      device=value.device, memory_format=torch.channels_last)
    out = res.permute(0, 2, 3, 1).view(b, h, sy, w, sx, c)  # a view of res
    for a in range(k):
        for bb in range(k):
            term = pad[:, a:a + h, None, bb:bb + w, None]  # B×h×1×w×1×C, broadcast over (p, q)
            t = a * k + bb
            if t == 0:
                torch.mul(term, kern[:, t], out=out)
            else:
                out.addcmul_(term, kern[:, t])
    return res.contiguous(memory_format=_memory_format(value))  # res itself, not a view


def _similarity_phases(query: torch.Tensor, key: torch.Tensor, k: int,
                       phases: tuple[int, int]) -> torch.Tensor:
    """:func:`window_similarity_plain` at H = s_y·h, W = s_x·w (as :func:`_reassemble_phases`)."""
    (sy, sx), r = phases, k // 2
    b, d, h, w = key.shape
    pad = _padded_rows(key, r)
    q = query.permute(0, 2, 3, 1).contiguous()  # no copy for a channels-last query (SAPA's)
    q = q.view(b, h, sy, w, sx, d)
    dtype = torch.result_type(query, key)
    out = torch.empty((b, k * k, h, sy, w, sx), dtype=dtype, device=query.device)
    prod = torch.empty(q.shape, dtype=dtype, device=query.device)  # reused by every tap
    for a in range(k):
        for bb in range(k):
            torch.mul(q, pad[:, a:a + h, None, bb:bb + w, None], out=prod)
            torch.sum(prod, -1, out=out[:, a * k + bb])
    return out.view(b, k * k, h * sy, w * sx)


def _reassemble_phase_slices(value: torch.Tensor, weights: torch.Tensor, k: int,
                             phases: tuple[int, int]) -> torch.Tensor:
    """:func:`_reassemble_phases` export-safe (out of place; recorded by static-size exports):
    per tap one ``Slice`` of the padded channels-last map, a broadcasting ``Mul`` and ``Add``
    (the kernels split once into their k² taps)."""
    (sy, sx), r = phases, k // 2
    b, c, h, w = value.shape
    pad = F.pad(value, (r, r, r, r)).permute(0, 2, 3, 1)[:, :, None, :, None]  # B×h'×1×w'×1×C
    kern = weights.reshape(b, k * k, h, sy, w, sx, 1).unbind(1)
    out = None
    for a in range(k):
        for bb in range(k):
            term = pad[:, a:a + h, :, bb:bb + w] * kern[a * k + bb]
            out = term if out is None else out + term
    return out.reshape(b, h * sy, w * sx, c).permute(0, 3, 1, 2)


def _similarity_phase_slices(query: torch.Tensor, key: torch.Tensor, k: int,
                             phases: tuple[int, int]) -> torch.Tensor:
    """:func:`_similarity_phases` export-safe (as :func:`_reassemble_phase_slices`)."""
    (sy, sx), r = phases, k // 2
    b, d, h, w = key.shape
    pad = F.pad(key, (r, r, r, r)).permute(0, 2, 3, 1)[:, :, None, :, None]
    q = query.permute(0, 2, 3, 1).reshape(b, h, sy, w, sx, d)
    taps = [(q * pad[:, a:a + h, :, bb:bb + w]).sum(-1) for a in range(k) for bb in range(k)]
    return torch.stack(taps, 1).reshape(b, k * k, h * sy, w * sx)


def _scatter_phases(grad: torch.Tensor, weights: torch.Tensor, k: int,
                    phases: tuple[int, int], like: torch.Tensor) -> torch.Tensor:
    """Adjoint of :func:`_reassemble_phases` in the value, the gradient of the reassembly wrt
    ``like`` (B×C×h×w): Σ_t Σ_(p,q) weights_t · grad added into tap t's slice of the padded
    map. ``grad`` B×C×H×W, ``weights`` B×k²×H×W → B×C×h×w in ``like``'s memory format."""
    (sy, sx), r = phases, k // 2
    b, c, h, w = like.shape
    g = grad.permute(0, 2, 3, 1).contiguous().view(b, h, sy, w, sx, c)  # no copy if NHWC
    kern = weights.unflatten(2, (h, sy)).unflatten(4, (w, sx)).unsqueeze(-1)  # views
    pad = torch.zeros((b, h + 2 * r, w + 2 * r, c), dtype=torch.result_type(grad, weights),
                      device=grad.device)
    for a in range(k):
        for bb in range(k):
            dst, t = pad[:, a:a + h, bb:bb + w], a * k + bb  # B×h×w×C, a view of pad
            for p in range(sy):
                for q in range(sx):
                    dst.addcmul_(g[:, :, p, :, q], kern[:, t, :, p, :, q])
    return pad[:, r:r + h, r:r + w].permute(0, 3, 1, 2).contiguous(
        memory_format=_memory_format(like))


class _Reassemble(torch.autograd.Function):
    """:func:`reassemble_plain` whose backward recomputes the taps instead of storing k² of
    them (the plain autograd graph would keep k² B×C×H×W tensors)."""

    @staticmethod
    def forward(ctx, value, weights, k):
        ctx.save_for_backward(value, weights)
        ctx.k = k
        with torch.no_grad():
            return reassemble_plain(value, weights, k)

    @staticmethod
    def backward(ctx, grad):
        value, weights = ctx.saved_tensors
        k, size = ctx.k, (weights.shape[-2], weights.shape[-1])
        g_w = g_v = None
        if ctx.needs_input_grad[1]:
            g_w = torch.cat([(term * grad).sum(1, keepdim=True)
                             for _, term in _taps(value, size, k)], 1)
        if ctx.needs_input_grad[0]:
            g_v = _scatter_taps(lambda t: grad * weights[:, t:t + 1], value.shape, size, k, grad)
        return g_v, g_w, None


class _WindowSimilarity(torch.autograd.Function):
    """:func:`window_similarity_plain` with a recomputing backward (as :class:`_Reassemble`)."""

    @staticmethod
    def forward(ctx, query, key, k):
        ctx.save_for_backward(query, key)
        ctx.k = k
        with torch.no_grad():
            return window_similarity_plain(query, key, k)

    @staticmethod
    def backward(ctx, grad):
        query, key = ctx.saved_tensors
        k, size = ctx.k, (query.shape[-2], query.shape[-1])
        g_q = g_k = None
        if ctx.needs_input_grad[0]:
            g_q = torch.zeros_like(query)
            for t, term in _taps(key, size, k):
                g_q.addcmul_(term, grad[:, t:t + 1])
        if ctx.needs_input_grad[1]:
            g_k = _scatter_taps(lambda t: query * grad[:, t:t + 1], key.shape, size, k, grad)
        return g_q, g_k, None


class _ReassemblePhases(torch.autograd.Function):
    """:func:`reassemble` at H = s_y·h, W = s_x·w with gradients (the training phase path):
    forward :func:`_reassemble_phases`; backward in phase form too, saving only the inputs
    (module docstring). A double backward (``create_graph``) takes :class:`_Reassemble`'s
    differentiable backward."""

    @staticmethod
    def forward(ctx, value, weights, k, phases):
        ctx.save_for_backward(value, weights)
        ctx.k, ctx.phases = k, phases
        with torch.no_grad():
            return _reassemble_phases(value, weights, k, phases)

    @staticmethod
    def backward(ctx, grad):
        if torch.is_grad_enabled():
            return (*_Reassemble.backward(ctx, grad), None)
        value, weights = ctx.saved_tensors
        grad = grad.contiguous(memory_format=torch.channels_last)  # one copy, read twice
        g_w = g_v = None
        if ctx.needs_input_grad[1]:  # ⟨grad, Σ_t w_t·tap_t(v)⟩ = ⟨w, similarity(grad, v)⟩
            g_w = _similarity_phases(grad, value, ctx.k, ctx.phases)
        if ctx.needs_input_grad[0]:
            g_v = _scatter_phases(grad, weights, ctx.k, ctx.phases, value)
        return g_v, g_w, None, None


class _WindowSimilarityPhases(torch.autograd.Function):
    """:func:`window_similarity` at H = s_y·h, W = s_x·w with gradients (as
    :class:`_ReassemblePhases`): the gradient wrt the query is a reassembly of the keys by the
    logits' gradient, wrt the keys the reassembly's adjoint."""

    @staticmethod
    def forward(ctx, query, key, k, phases):
        ctx.save_for_backward(query, key)
        ctx.k, ctx.phases = k, phases
        with torch.no_grad():
            return _similarity_phases(query, key, k, phases)

    @staticmethod
    def backward(ctx, grad):
        if torch.is_grad_enabled():
            return (*_WindowSimilarity.backward(ctx, grad), None)
        query, key = ctx.saved_tensors
        g_q = g_k = None
        if ctx.needs_input_grad[0]:
            g_q = _reassemble_phases(key, grad, ctx.k, ctx.phases)
        if ctx.needs_input_grad[1]:
            g_k = _scatter_phases(query, grad, ctx.k, ctx.phases, key)
        return g_q, g_k, None, None


def _recompute(*tensors: torch.Tensor) -> bool:
    return (torch.is_grad_enabled() and any(t.requires_grad for t in tensors)
            and not tracing_or_exporting())


def reassemble(value: torch.Tensor, weights: torch.Tensor, k: int) -> torch.Tensor:
    """CARAFE's reassembly: B×C×h×w values, B×k²×H×W kernels (tap t = a·k + b over the k×k
    window around each output pixel's source cell) → B×C×H×W. Memory O(B·C·H·W)."""
    phases = _phases((weights.shape[-2], weights.shape[-1]), (value.shape[-2], value.shape[-1]))
    if _recompute(value, weights):
        if phases is not None and fast_training():
            return _ReassemblePhases.apply(value, weights, k, phases)
        return _Reassemble.apply(value, weights, k)
    if phases is not None and fast_inference(None, value, weights):
        return _reassemble_phases(value, weights, k, phases)
    if phases is not None and sizes_are_static() and fast_formula(None, value, weights):
        return _reassemble_phase_slices(value, weights, k, phases)
    return reassemble_plain(value, weights, k)


def window_similarity(query: torch.Tensor, key: torch.Tensor, k: int) -> torch.Tensor:
    """Dot products of each query (B×d×H×W) with the k² keys (B×d×h×w) of its window → B×k²×H×W.
    Keys outside the map are zero vectors (logit 0)."""
    phases = _phases((query.shape[-2], query.shape[-1]), (key.shape[-2], key.shape[-1]))
    if _recompute(query, key):
        if phases is not None and fast_training():
            return _WindowSimilarityPhases.apply(query, key, k, phases)
        return _WindowSimilarity.apply(query, key, k)
    if phases is not None and fast_inference(None, query, key):
        return _similarity_phases(query, key, k, phases)
    if phases is not None and sizes_are_static() and fast_formula(None, query, key):
        return _similarity_phase_slices(query, key, k, phases)
    return window_similarity_plain(query, key, k)


def reassembly_macs(channels: int, k: int, out: torch.Tensor) -> int:
    """Multiply-adds of a k×k reassembly (or similarity) of ``channels`` channels onto
    ``out``'s grid, which the flop counter does not see (elementwise products)."""
    return out.shape[0] * channels * k * k * out.shape[-2] * out.shape[-1]
