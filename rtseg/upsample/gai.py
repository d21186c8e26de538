"""GAI, Guided Attentive Interpolation (GAIN), exactly as the official ``CCCrossLayerAttention``.

The coarse feature S is bilinearly upsampled onto the fine grid (S↑). The query source is
``Conv1x1(cat[S↑, L])`` (fine *and* coarse), the value source ``V0 = Conv1x1(S↑)``. One
criss-cross attention block is applied twice with shared weights, the query source fixed and
the value updated: ``V_r = γ·CC(Qsrc, V_{r-1}) + V_{r-1}``. Inside CC every pixel attends to the
H + W positions of its column and row, one softmax over all of them, its own position counted
once, no temperature; γ starts at 0. Output ``CBR1x1(cat[V_2, S↑])``.

``attention="nonlocal"`` swaps CC for full softmax attention over all H·W positions (scaled by
1/√d, one pass), the ablation the paper compares against.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..layers import ConvBNAct, resize


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
        attend = criss_cross_attention if self.kind == "criss_cross" else nonlocal_attention
        return self.gamma * attend(self.query(qsrc), self.key(x), self.value(x)) + x


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
        qsrc = self.query_source(torch.cat([up, fine], dim=1))
        v = self.value_source(up)
        for _ in range(self.recurrence):
            v = self.attention(qsrc, v)
        return self.fuse(torch.cat([v, up], dim=1))


class GAINonLocal(GAI):
    """GAI with full non-local softmax attention (one pass): the paper's ablation."""

    def __init__(self, coarse_channels: int, fine_channels: int, channels: int) -> None:
        super().__init__(coarse_channels, fine_channels, channels, attention="nonlocal")
