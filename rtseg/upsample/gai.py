"""GAI, Guided Attentive Interpolation (GAIN), exactly as the official ``CCCrossLayerAttention``.

The coarse feature S is bilinearly upsampled onto the fine grid (S↑). The query source is
``Conv1x1(cat[S↑, L])`` (fine *and* coarse), the value source ``V0 = Conv1x1(S↑)``. One
criss-cross attention block is applied twice with shared weights, the query source fixed and
the value updated: ``V_r = γ·CC(Qsrc, V_{r-1}) + V_{r-1}``. Inside CC every pixel attends to the
H + W positions of its column and row, one softmax over all of them, its own position counted
once, no temperature; γ starts at 0. Output ``CBR1x1(cat[V_2, S↑])``.

``attention="nonlocal"`` swaps CC for full softmax attention over all H·W positions (scaled by
1/√d, one pass), an ablation variant of the official code (``NL``).

Speed (eager inference only, ``torch.compile`` included; training and
:func:`rtseg.layers.reference_paths` take the plain formula of :func:`criss_cross_attention`,
which the tests hold as the oracle; traced and exported graphs hold :func:`criss_cross_lines`,
below): the query is
computed once for both recurrences (the official code recomputes it), the attention runs on
channels-last tensors so that no per-pixel layout copy of q, k or v is made for the row part,
and :func:`criss_cross_rows` never materialises the B×H×W×(H+W) energies: it walks rows and
columns in blocks whose energies stay in cache, and merges the two softmaxes exactly through
their log-sum-exps.

**The exported graph** (ONNX export or ``torch.jit.trace``: the blocks above are a Python loop
with in-place writes, so it records the export-safe :meth:`GAI.forward_lines` instead) holds the
joint softmax of :func:`criss_cross_attention` on channels-last tensors
(:func:`criss_cross_lines`): the query as one d-wide 1×1 ``Conv`` per input (the query-source
and query layers composed, no concatenation of S↑ and L), made channels-last once for both
recurrences; k and v as ``Gemm`` on the value rows; per recurrence four batched ``MatMul`` (row
and column energies, row and column outputs), a ``Softmax`` per part (self included in both)
merged exactly through the parts' log-sum-exps, the column's own value left out by a 0/1 ``Mul``
and its weight by a subtraction from the denominator. Besides the change to channels-last of q
and of the value (and back before ``fuse``), only swaps of H and W (``Transpose`` of contiguous
vectors) change the layout: the plain graph's NCHW → column-major ``Transpose`` of q, k and v in
every recurrence, its ``Where`` over the B×W×H×H column energies and its concatenation of S↑ and
L are gone. The non-local variant exports its plain form.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..layers import ConvBNAct, fast_formula, fast_inference, linear_rows, pointwise, resize


def criss_cross_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Criss-cross attention.

    Args:
        q, k: B×d×H×W queries and keys.
        v: B×c×H×W values.

    Returns:
        B×c×H×W: for pixel (i, j), the softmax over the energies q_ij·k of column j (i' ≠ i) and
        row i (all j') of the matching values, summed.

    The column part is computed batched over columns (B×W×H×H) and the row part batched over
    rows (B×H×W×W), each from contiguous operands, so every product is a plain batched GEMM
    (an einsum on the B×d×H×W layout makes the CPU ``bmm`` copy strided matrices one by one:
    at 256×512 1.7× slower on one thread and about 20× on two). The joint softmax shares one
    per-pixel maximum; exponentials are taken in place and the normalisation is applied to the
    B×c×H×W output rather than to the B×H×W×(H+W) weights, so no concatenated or split copy
    of the energies is made.
    """
    h = q.shape[-2]
    q_col = q.permute(0, 3, 2, 1).contiguous()  # B×W×H×d
    k_col = k.permute(0, 3, 1, 2).contiguous()  # B×W×d×H
    q_row = q.permute(0, 2, 3, 1).contiguous()  # B×H×W×d
    k_row = k.permute(0, 2, 1, 3).contiguous()  # B×H×d×W
    e_col = torch.matmul(q_col, k_col)  # B×W×H×H': energy of (i, j) with (i', j)
    e_row = torch.matmul(q_row, k_row)  # B×H×W×W': energy of (i, j) with (i, j')
    idx = torch.arange(h, device=q.device)
    e_col.masked_fill_(idx[:, None] == idx[None], float("-inf"))  # self counted once, in the row
    with torch.no_grad():  # any shift gives the same softmax; this one keeps exp() <= 1
        m = torch.maximum(e_col.amax(-1).transpose(1, 2), e_row.amax(-1))  # B×H×W
    p_col = e_col.sub_(m.transpose(1, 2).unsqueeze(-1)).exp_()
    p_row = e_row.sub_(m.unsqueeze(-1)).exp_()
    denom = p_col.sum(-1).transpose(1, 2) + p_row.sum(-1)  # B×H×W
    v_col = v.permute(0, 3, 2, 1).contiguous()  # B×W×H×c
    v_row = v.permute(0, 2, 3, 1).contiguous()  # B×H×W×c
    out = torch.matmul(p_row, v_row)  # B×H×W×c
    out = out.add_(torch.matmul(p_col, v_col).transpose(1, 2)).div_(denom.unsqueeze(-1))
    return out.permute(0, 3, 1, 2)


def criss_cross_lines(q: torch.Tensor, q_col: torch.Tensor, k: torch.Tensor,
                      v: torch.Tensor) -> torch.Tensor:
    """:func:`criss_cross_attention` on channels-last tensors, export-safe (the exported form).

    Args:
        q, k: B×H×W×d; ``q_col``: ``q.transpose(1, 2)`` (B×W×H×d, made once by the caller for
            every recurrence); v: B×H×W×c.

    Returns:
        B×H×W×c, the reference's joint softmax, as two softmaxes merged exactly. The row part
        (every pixel over its row, itself included) and the column part (over its column,
        itself included) are each one ``Softmax`` over the last axis (one kernel per line in
        ONNX Runtime), and each part's log-sum-exp is read back as ``l = max(e) − log(max(p))``
        (a softmax's largest weight is ``1/Σ exp(e − max e)``). The column's weights are
        multiplied by an H×H matrix of 0 and 1 before their product with the values, so a
        pixel's own value enters once, through its row (o_r, o_c: the two products). With the
        pixel's own energy ``e_s = q·k`` and ``M = max(l_r, l_c)``::

            out = (a·o_r + b·o_c) / (a + b − s),   a, b, s = exp((l_r, l_c, e_s) − M)

        (the own position's weight ``s`` leaves the column's sum). ``a + b − s ≥ max(a, b) = 1``
        up to rounding (``s ≤ a``: the row holds the own energy). No −inf: a 0/−inf mask sends
        every masked exponential down the slow subnormal path of ONNX Runtime's ``Exp`` and
        ``Softmax``, and an int8 model quantises −inf to a finite number. Passes over the
        energies per part: the product, the ``Softmax``, the two maxima (and the column's 0/1
        ``Mul``), the product with the values; the earlier form (one shared maximum, ``Sub``,
        ``Exp``, the 0/1 ``Mul``, the sums) timed 1.48× against this form's 1.43×
        ``fpn_r18_bilinear`` (ONNX Runtime, 512×1024, docs/deploy.md). Every product is a
        batched GEMM on operands whose last axis is contiguous (d or c): the only layout
        changes are the swaps of H and W (``transpose(1, 2)``: contiguous d- or c-vectors moved
        as blocks) of k and v for the column part and of its result. No in-place writes, no
        loop: one graph for any H and W.
    """
    k_col, v_col = k.transpose(1, 2), v.transpose(1, 2)  # B×W×H×·
    e_row = torch.matmul(q, k.transpose(-1, -2))  # B×H×W×W': (i, j) with (i, j')
    e_col = torch.matmul(q_col, k_col.transpose(-1, -2))  # B×W×H×H': (i, j) with (i', j)
    p_row, p_col = torch.softmax(e_row, -1), torch.softmax(e_col, -1)
    l_row = e_row.amax(-1) - torch.log(p_row.amax(-1))  # B×H×W log-sum-exps
    l_col = (e_col.amax(-1) - torch.log(p_col.amax(-1))).transpose(1, 2)
    m = torch.maximum(l_row, l_col)
    a, b = torch.exp(l_row - m).unsqueeze(-1), torch.exp(l_col - m).unsqueeze(-1)
    s = torch.exp((q * k).sum(-1) - m).unsqueeze(-1)  # the own position's weight
    idx = torch.arange(q.shape[1], device=q.device)
    keep = (idx[:, None] != idx[None]).to(e_col.dtype)  # H×H: the own value only in the row
    o_row = torch.matmul(p_row, v)
    o_col = torch.matmul(p_col * keep, v_col).transpose(1, 2)
    return (a * o_row + b * o_col) / (a + b - s)


# energies per block of lines (2^20 floats, 4 MB): big enough for every thread to get several
# lines of a batched GEMM, small enough to stay in this CPU's L2 + L3 between the four passes
_BLOCK_ENERGIES = 1 << 20
# e − max is clamped here before the exponential when it can fall below it: below about −87
# exp() gives float subnormals (or 0 through them), and the exponential and the product that
# reads them run an order of magnitude slower on x86 (a sharply peaked attention: 241.7 ms
# against 17.4 flat for one block at 128×256); exp(−80) ≈ 1.8e-35 changes a weight by less
# than float32 can show. The clamp is a pass over the energies (17.4 → 21.8 ms flat), so it
# runs only when 2·max|q|·max|k|, a bound on any line's spread, exceeds 80.
_EXP_FLOOR = -80.0


def _line_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, skip_self: bool, clamp: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax attention of each line over its own positions, in blocks of lines.

    Args:
        q, k: N×L×d (N lines of L positions); v: N×L×c; any strides.
        skip_self: leave each position's own key out (needs L ≥ 2).
        clamp: clamp e − max at :data:`_EXP_FLOOR` (needed only where it can go below).

    Returns:
        (N×L×c outputs, each normalised by its own softmax; N×L log-sum-exps of the
        energies), so that two such parts over disjoint keys merge exactly.
    """
    n, length, _ = q.shape
    out = v.new_empty(n, length, v.shape[-1])
    lse = v.new_empty(n, length)
    kt = k.transpose(-1, -2)
    step = max(1, _BLOCK_ENERGIES // (length * length))
    for s in range(0, n, step):
        e = torch.bmm(q[s:s + step], kt[s:s + step])  # n'×L×L
        if skip_self:
            e.diagonal(dim1=-2, dim2=-1).fill_(float("-inf"))
        m = e.amax(-1, keepdim=True)
        e.sub_(m)
        if clamp:
            e.clamp_(min=_EXP_FLOOR)
            if skip_self:  # the clamp lifted the own key's −inf: out again (exp(−inf) = 0)
                e.diagonal(dim1=-2, dim2=-1).fill_(float("-inf"))
        z = e.exp_().sum(-1, keepdim=True)
        torch.bmm(e, v[s:s + step], out=out[s:s + step]).div_(z)
        lse[s:s + step] = z.log_().add_(m).squeeze(-1)
    return out, lse


def criss_cross_rows(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """:func:`criss_cross_attention` for inference, on B×H×W×· tensors, in blocks.

    Args:
        q, k: B×H×W×d; v: B×H×W×c (channels last; any strides).

    Returns:
        B×H×W×c, equal to the reference. The row part (every pixel over its row, itself
        included) and the column part (over its column, itself excluded) are each a
        :func:`_line_attention` that never holds more than a cache-sized block of energies;
        with ``l`` their log-sum-exps, ``out = o_col + σ(l_row − l_col)·(o_row − o_col)`` is
        the joint softmax. In-place and ``out=`` writes: no autograd.
    """
    b, h, w, c = v.shape
    out = v.new_empty(b, h, w, c)
    spread = 2 * float(q.norm(dim=-1).amax()) * float(k.norm(dim=-1).amax())  # ≥ any line's
    clamp = spread > -_EXP_FLOOR
    for i in range(b):
        o_row, l_row = _line_attention(q[i], k[i], v[i], skip_self=False, clamp=clamp)
        if h == 1:  # the column holds only the pixel itself, already counted in its row
            out[i] = o_row
            continue
        cols = (t[i].transpose(0, 1) for t in (q, k, v))  # W×H×· views
        o_col, l_col = _line_attention(*cols, skip_self=True, clamp=clamp)
        weight = torch.sigmoid_(l_row.sub_(l_col.t())).unsqueeze(-1)
        torch.lerp(o_col.transpose(0, 1), o_row, weight, out=out[i])
    return out


def criss_cross_attention_blocked(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor
) -> torch.Tensor:
    """:func:`criss_cross_rows` on the reference's B×d×H×W, B×d×H×W, B×c×H×W → B×c×H×W."""
    rows = (t.permute(0, 2, 3, 1).contiguous() for t in (q, k, v))  # strided d is slow
    return criss_cross_rows(*rows).permute(0, 3, 1, 2)


def nonlocal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Full softmax attention over all H·W positions, scaled by 1/√d.

    q, k: B×d×H×W; v: B×c×H×W → B×c×H×W. Uses ``scaled_dot_product_attention`` so the
    (HW)×(HW) matrix is not stored when a fused kernel is available.
    """
    b, d, h, w = q.shape
    qs = q.flatten(2).transpose(1, 2).unsqueeze(1)  # B×1×n×d
    ks = k.flatten(2).transpose(1, 2).unsqueeze(1)
    vs = v.flatten(2).transpose(1, 2).unsqueeze(1)  # B×1×n×c
    out = F.scaled_dot_product_attention(qs, ks, vs, scale=1.0 / math.sqrt(d))
    return out.squeeze(1).transpose(1, 2).reshape(b, v.shape[1], h, w)


class CrossLayerAttention(nn.Module):
    """One attention block: q from the query source, k and v from the current value.

    ``forward(qsrc: B×C_q×H×W, x: B×C×H×W) -> γ·attn(q, k, v) + x``, γ initialised to 0.
    """

    def __init__(self, query_channels: int, channels: int, key_channels: int, kind: str) -> None:
        super().__init__()
        if kind not in ("criss_cross", "nonlocal"):
            raise ValueError(f"attention must be 'criss_cross' or 'nonlocal', got {kind!r}")
        self.kind = kind
        self.query = nn.Conv2d(query_channels, key_channels, 1)
        self.key = nn.Conv2d(channels, key_channels, 1)
        self.value = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, qsrc: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.attend(self.query(qsrc), x)

    def attend(self, q: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``forward`` for an already projected query ``q`` (B×d×H×W): ``γ·attn + x``."""
        attend = criss_cross_attention if self.kind == "criss_cross" else nonlocal_attention
        return self.gamma * attend(q, self.key(x), self.value(x)) + x

    def attend_lines(self, q: torch.Tensor, q_col: torch.Tensor, x: torch.Tensor
                     ) -> torch.Tensor:
        """:meth:`attend`, export-safe, on channels-last B×H×W×· tensors (criss-cross):
        k and v as products on the rows (:func:`~rtseg.layers.linear_rows`), then
        :func:`criss_cross_lines`."""
        k = linear_rows(x, self.key.weight.flatten(1), self.key.bias)
        v = linear_rows(x, self.value.weight.flatten(1), self.value.bias)
        return self.gamma * criss_cross_lines(q, q_col, k, v) + x

    def attend_rows(self, q: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """:meth:`attend` for inference on channels-last B×H×W×· tensors (criss-cross)."""
        out = criss_cross_rows(q, pointwise([x], self.key), pointwise([x], self.value))
        return out.mul_(self.gamma).add_(x)


class GAI(nn.Module):
    """Guided Attentive Interpolation: coarse semantic features rebuilt on the fine grid.

    Args:
        coarse_channels: C_c of the low-resolution semantic feature S (official: 128).
        fine_channels: C_f of the high-resolution guide L (official: 128).
        channels: C of the output (official: 128). Inner width C/2, key width C/16.
        attention: "criss_cross" (the official GAI) or "nonlocal" (the ablation).
        recurrence: attention passes with shared weights; default 2 (criss-cross) or 1.

    Forward: ``coarse`` B×C_c×h×w, ``fine`` B×C_f×H×W → B×C×H×W.
    """

    def __init__(
        self,
        coarse_channels: int,
        fine_channels: int,
        channels: int,
        attention: str = "criss_cross",
        recurrence: int | None = None,
    ) -> None:
        super().__init__()
        inner = max(channels // 2, 1)
        self.recurrence = recurrence or (2 if attention == "criss_cross" else 1)
        self.query_source = nn.Conv2d(coarse_channels + fine_channels, inner, 1)
        self.value_source = nn.Conv2d(coarse_channels, inner, 1)
        self.attention = CrossLayerAttention(inner, inner, max(channels // 16, 1), attention)
        self.fuse = ConvBNAct(inner + coarse_channels, channels, 1)

    def forward(self, coarse: torch.Tensor, fine: torch.Tensor) -> torch.Tensor:
        up = resize(coarse, fine.shape[-2:])
        if self.attention.kind == "criss_cross" and fast_inference(self, up, fine):
            up, fine = up.permute(0, 2, 3, 1), fine.permute(0, 2, 3, 1)  # B×H×W×C views
            q = pointwise([pointwise([up, fine], self.query_source)], self.attention.query)
            v = pointwise([up], self.value_source)
            for _ in range(self.recurrence):
                v = self.attention.attend_rows(q, v)
            return pointwise([v, up], self.fuse).permute(0, 3, 1, 2)
        if self.attention.kind == "criss_cross" and fast_formula(self, up, fine):
            return self.forward_lines(up, fine)
        q = self.attention.query(self.query_source(torch.cat([up, fine], dim=1)))
        v = self.value_source(up)
        for _ in range(self.recurrence):
            v = self.attention.attend(q, v)
        return self.fuse(torch.cat([v, up], dim=1))


    def query_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(d×(C_c + C_f) weight, bias) of the query, the two 1×1 layers composed:
        ``Wq(Wqs·cat + bqs) + bq = (Wq Wqs)·cat + (Wq bqs + bq)``."""
        wqs, wq = self.query_source.weight.flatten(1), self.attention.query.weight.flatten(1)
        return wq @ wqs, wq @ self.query_source.bias + self.attention.query.bias

    def forward_lines(self, up: torch.Tensor, fine: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` after the resize, export-safe (what an ONNX export records).

        The query is one 1×1 layer per input (:meth:`query_weights`: d outputs, no
        concatenated copy of S↑ and L, no C/2-wide intermediate), made channels-last once
        for both recurrences (and swapped to columns once); the value stays channels-last
        from ``value_source`` to ``fuse``; the attention is :func:`criss_cross_lines`.
        """
        w, b = self.query_weights()
        c_up = up.shape[1]
        q = F.conv2d(up, w[:, :c_up, None, None], b) + F.conv2d(fine, w[:, c_up:, None, None])
        q = q.permute(0, 2, 3, 1)  # B×H×W×d
        q_col = q.transpose(1, 2)  # B×W×H×d
        v = self.value_source(up).permute(0, 2, 3, 1)  # B×H×W×C/2
        for _ in range(self.recurrence):
            v = self.attention.attend_lines(q, q_col, v)
        return self.fuse(torch.cat([v.permute(0, 3, 1, 2), up], dim=1))


class GAINNonLocal(GAI):
    """GAI with full non-local softmax attention (one pass): the official ``NL`` variant."""

    def __init__(self, coarse_channels: int, fine_channels: int, channels: int) -> None:
        super().__init__(coarse_channels, fine_channels, channels, attention="nonlocal")
