"""FANet's fast attention: cosine-similarity attention without softmax, computed as Q̂(K̂ᵀV).

Exactly FANet's ``FastAttModule`` on one level X (B×C×H×W, n = HW)::

    Q = BN(Conv1x1(X)) → 32,  K = BN(Conv1x1(X)) → 32,  V = LReLU(BN(Conv1x1(X))) → C
    Q̂, K̂ = L2-normalised over the 32 channels of each pixel
    Y = Q̂ (K̂ᵀ V) [/ n]        (32×C intermediate; the n×n affinity is never formed)
    Z = X + LReLU(BN(Conv1x1(Y)))

Sources: the seed abstract (self-attention with the order of operations changed and no
softmax, a cosine-similarity affinity); the formula above is the official code
(``LAFeatureFusionModule``). The 1/n factor (``mean=True``, the default) is rtseg's choice: the
official code has none, and whether the paper's formula has it is unverified here (the seed is
an abstract; a third-party reimplementation, zh320's, divides by n). Each q̂·k̂ lies in [-1, 1],
so with 1/n the output is a bounded weighted mean of V whatever the resolution, whereas without
it the output grows with n and a network trained on crops sees larger activations when run on
whole frames. ``mean=False`` gives the official behaviour. The official ``up`` conv's
``padding=1`` lives in :mod:`rtseg.models.fanet` (switch ``up_padding``).

Three formulas compute the block (``rtseg.layers``): the plain one above (training, gradients,
:func:`~rtseg.layers.reference_paths`; the tests' oracle); the eager inference path
(:meth:`FastAttention.residual_rows`: channels-last GEMMs); and the export-safe form, which an
ONNX export (or a ``torch.jit.trace``) records. **The exported graph holds** ``Q̂((K̂ᵀV)Wᵀ)``:
Q and K from one 1×1 ``Conv`` (their BatchNorms folded, weights stacked), V from its own
``Conv`` + ``LeakyRelu``, ``ReduceL2`` normalisation, then ``MatMul`` for the B×C×d summary
``V K̂ᵀ`` (/ n), ``MatMul`` of the folded output projection with that summary (C'×C by C×d),
and one ``MatMul`` with Q̂ to B×C'×HW, plus bias and ``LeakyRelu``: the HW×C×C output
projection and the transposes of the HW×C maps are gone (the plain graph had four ``Conv``
and three ``Transpose`` per block, this one two and one). The temporal FANet's
:meth:`FastAttention.summary` and :meth:`FastAttention.attend` export the same way.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..layers import ConvBNAct, activate, fast_formula, fast_inference, folded, resize


def fast_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mean: bool = True
) -> torch.Tensor:
    """Cosine attention without softmax, in linear time.

    Args:
        q, k: B×d×H×W (normalised here over d).
        v: B×c×H×W.
        mean: divide by n = H·W.

    Returns:
        B×c×H×W, ``Y[:, :, p] = Σ_p' cos(q_p, k_p') v_p'`` (/ n).
    """
    b, c, h, w = v.shape
    qn = F.normalize(q.flatten(2), dim=1, eps=1e-12)  # B×d×n
    kn = F.normalize(k.flatten(2), dim=1, eps=1e-12)  # B×d×n
    kv = torch.bmm(kn, v.flatten(2).transpose(1, 2))  # B×d×c
    if mean:
        kv = kv / (h * w)
    y = torch.bmm(qn.transpose(1, 2), kv)  # B×n×c
    return y.transpose(1, 2).reshape(b, c, h, w)


class FastAttention(nn.Module):
    """FANet's attention block on one level: ``forward(x) = x + residual(x)``, B×C×H×W in/out."""

    def __init__(self, channels: int, key_channels: int = 32, mean: bool = True) -> None:
        super().__init__()
        self.mean = mean
        self.query = ConvBNAct(channels, key_channels, 1, act=None)
        self.key = ConvBNAct(channels, key_channels, 1, act=None)
        self.value = ConvBNAct(channels, channels, 1, act="leaky")
        self.project = ConvBNAct(channels, channels, 1, act="leaky")

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """LReLU(BN(Conv1x1(Q̂(K̂ᵀV)))): the attention term without the identity."""
        if fast_inference(self, x):
            return self.residual_rows(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        if fast_formula(self, x):  # tracing or exporting: the export-safe form
            qn, kn, v = self._qkv_maps(x)
            vk = torch.bmm(v, kn.transpose(1, 2))  # B×C×d, (K̂ᵀV)ᵀ
            return self._out_maps(qn, vk, x.shape[2] * x.shape[3], x.shape)
        y = fast_attention(self.query(x), self.key(x), self.value(x), self.mean)
        return self.project(y)

    def _qkv_maps(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Export-safe Q̂, K̂ (B×d×HW, normalised) and V (B×C×HW) of B×C×H×W maps: Q and K
        from one 1×1 convolution (their BatchNorms folded, weights stacked; splitting its 2d
        channels copies little), V from its own (convolution and activation fused by the
        runtimes). No tensor is transposed."""
        (wq, bq, _), (wk, bk, _) = folded(self.query), folded(self.key)
        qk = F.conv2d(x, torch.cat([wq, wk])[:, :, None, None], torch.cat([bq, bk]))
        q, k = qk.flatten(2).split(self.query.conv.out_channels, dim=1)
        return _unit_columns(q), _unit_columns(k), self.value(x).flatten(2)

    def _out_maps(self, qn: torch.Tensor, vk: torch.Tensor, pixels: int | torch.Tensor,
                  shape: torch.Size) -> torch.Tensor:
        """Export-safe LReLU(BN(Conv(Q̂ S [/ pixels]))) as B×C'×H×W maps, for ``vk`` = Sᵀ
        (B×C×d): the projection is applied to the d×C summary, ``(Wp Sᵀ) Q̂``, so no
        HW×C×C product is made (:meth:`residual_rows` does the same on rows)."""
        wp, bp, act = folded(self.project)
        s = vk / pixels if self.mean else vk
        y = torch.matmul(wp, s)  # B×C'×d
        y = torch.bmm(y, qn)  # B×C'×HW
        if bp is not None:
            y = y + bp[:, None]
        return activate(act, y).reshape(shape[0], -1, shape[2], shape[3])

    def residual_rows(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`residual` for inference on channels-last B×H×W×C (returned the same way).

        Q, K and V come from one GEMM (their BatchNorms folded, weights stacked), so the
        input is read once. The projection is linear up to its activation, so it is applied
        to the small d×C summary instead of the B×HW×C attention output:
        ``Conv(Q̂(K̂ᵀV)) = Q̂((K̂ᵀV)Wᵀ)`` saves one HW×C×C product (a third of the block's
        multiply-adds) and a pass over HW×C values.
        """
        qn, kn, v = self._qkv_rows(x)
        return self._out_rows(qn, torch.bmm(kn.transpose(1, 2), v), x.shape[1] * x.shape[2],
                              x.shape[:3])

    def _qkv_rows(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Q̂, K̂ (B×HW×d, normalised) and V (B×HW×C) of B×H×W×C rows, from one GEMM."""
        b, h, w, c = x.shape
        (wq, bq, _), (wk, bk, _), (wv, bv, act) = (folded(m) for m in (
            self.query, self.key, self.value))
        d = wq.shape[0]
        qkv = F.linear(x.reshape(b, h * w, c), torch.cat([wq, wk, wv]), torch.cat([bq, bk, bv]))
        q, k, v = qkv.split([d, d, qkv.shape[-1] - 2 * d], dim=-1)
        return F.normalize(q, dim=-1, eps=1e-12), F.normalize(k, dim=-1, eps=1e-12), act(v)

    def _out_rows(self, qn: torch.Tensor, summary: torch.Tensor, pixels: int,
                  shape: tuple[int, int, int]) -> torch.Tensor:
        """LReLU(BN(Conv(Q̂ S [/ pixels]))) as B×H×W×C rows, the projection applied to S."""
        wp, bp, act = folded(self.project)
        kv = F.linear(summary / pixels if self.mean else summary, wp)  # B×d×C'
        y = torch.baddbmm(bp, qn, kv) if bp is not None else torch.bmm(qn, kv)
        y = y.view(*shape, -1)
        return y if act is None else act(y)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.residual(x)

    def summary(self, x: torch.Tensor) -> torch.Tensor:
        """K̂ᵀV of one frame, B×d×C, without the 1/n: what another frame's queries attend to."""
        if fast_inference(self, x):  # the same operations as residual_rows
            _, kn, v = self._qkv_rows(x.permute(0, 2, 3, 1))
            return torch.bmm(kn.transpose(1, 2), v)
        if fast_formula(self, x):
            _, kn, v = self._qkv_maps(x)
            return torch.bmm(kn, v.transpose(1, 2))
        kn = F.normalize(self.key(x).flatten(2), dim=1, eps=1e-12)
        return torch.bmm(kn, self.value(x).flatten(2).transpose(1, 2))

    def attend(self, x: torch.Tensor, summary: torch.Tensor, pixels: int) -> torch.Tensor:
        """``x + LReLU(BN(Conv1x1(Q̂ S [/ pixels])))`` for a summed K̂ᵀV ``S`` (B×d×C) over
        ``pixels`` key pixels; with ``S = summary(x)`` and ``pixels = H·W`` this is
        ``forward(x)`` exactly."""
        b, c, h, w = x.shape
        if fast_inference(self, x, summary):  # with S = summary(x): residual_rows exactly
            qn, _, _ = self._qkv_rows(x.permute(0, 2, 3, 1))
            return x + self._out_rows(qn, summary, pixels, (b, h, w)).permute(0, 3, 1, 2)
        if fast_formula(self, x, summary):
            qn, _, _ = self._qkv_maps(x)
            return x + self._out_maps(qn, summary.transpose(1, 2), pixels, x.shape)
        qn = F.normalize(self.query(x).flatten(2), dim=1, eps=1e-12)
        kv = summary / pixels if self.mean else summary
        y = torch.bmm(qn.transpose(1, 2), kv).transpose(1, 2).reshape(b, c, h, w)
        return x + self.project(y)


def _unit_columns(x: torch.Tensor) -> torch.Tensor:
    """``F.normalize(x, dim=1, eps=1e-12)`` (B×d×n) as a graph records it without the
    ``Expand`` of the norms to x's shape: ``ReduceL2``, ``Clip`` and a broadcasting ``Div``."""
    return x / torch.linalg.vector_norm(x, dim=1, keepdim=True).clamp(min=1e-12)


class FastAttentionUpsample(nn.Module):
    """FANet's fusion step as an upsampler: attend on the fine level, add the upsampled coarse.

    Returns ``residual(fine) + bilinear(P(coarse))`` where P is a 1×1 CBR when C_c ≠ C. A
    caller that adds the fine feature (as :class:`~rtseg.models.fpn.FPN` does) gets FANet's
    ``Z + up(coarse)`` exactly.

    Forward: ``coarse`` B×C_c×h×w, ``fine`` B×C×H×W → B×C×H×W (C_f must equal C).
    """

    def __init__(
        self, coarse_channels: int, fine_channels: int, channels: int, mean: bool = True
    ) -> None:
        super().__init__()
        if fine_channels != channels:
            raise ValueError(
                f"fast_attention keeps the fine width: fine_channels ({fine_channels}) must "
                f"equal channels ({channels})"
            )
        self.attention = FastAttention(channels, mean=mean)
        self.project = (
            nn.Identity() if coarse_channels == channels
            else ConvBNAct(coarse_channels, channels, 1, act="leaky")
        )

    def forward(self, coarse: torch.Tensor, fine: torch.Tensor) -> torch.Tensor:
        return self.attention.residual(fine) + resize(self.project(coarse), fine.shape[-2:])
