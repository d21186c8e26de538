"""SAPA-B, Similarity-Aware Point Affiliation (Lu et al., NeurIPS 2022), in pure PyTorch.

Each output pixel attends to the k×k coarse neighbourhood of its source cell; the attention
logits are the similarity of a query from the fine feature and keys from the coarse one, and
the values are the coarse feature itself::

    q = W_q · LN(f)(i, j) + b_q                       B×d×H×W   (fine, per pixel)
    κ = W_k · LN(x)(u, v) + b_k                       B×d×h×w   (coarse, per pixel)
    A(i, j) = softmax_t( q(i, j) · κ(u_i + a − r, v_j + b − r) ),  t = (a, b) in the k×k window
    out(i, j) = Σ_t A_t(i, j) · x(u_i + a − r, v_j + b − r)

``LN`` is LayerNorm over channels (per pixel), ``W_q``/``W_k`` linear maps to d = 64 ("B" for
the bilinear similarity ``LN(f)ᵀ W_qᵀ W_k LN(x)``, SAPA's basic variant; SAPA-I, the inner
product without parameters, and SAPA-G, gated, are not built). Defaults as the official
``SAPA.py``: k = 5, d = 64, biases on, no 1/√d scaling, query/key weights from
``trunc_normal_(std=0.02)`` (bounds ±2, absolute), zero biases, LayerNorm weight 1 and bias 0.

Choices the paper leaves open, taken from the official CUDA kernels: the window centre
(u_i, v_j) is the source cell of output pixel (i, j) (``i // 2`` at H = 2h; rtseg's general rule
``floor((i + 0.5)·h/H)`` for odd sizes 2h ± 1); neighbours outside the map have logit 0 and
value 0 (they still take part in the softmax). The windowed similarity and the reassembly loop
over the k² taps (:func:`rtseg.upsample.reassembly.window_similarity`, ``reassemble``) and never
build a d·k²·H·W or C·k²·H·W tensor. At H = 2h, W = 2w both take the reassembly's phase path, in
inference and in training (forward and backward): each tap a plain slice of the padded coarse
map, no gather; at odd sizes (and under tracing or :func:`rtseg.layers.reference_paths`) the
gather loop, whose backward recomputes the taps (:mod:`rtseg.upsample.reassembly`).

In the pairwise slot: ``fine`` is the query source (any ``fine_channels``); the output has the
coarse feature's channels and no projection: ``channels`` must equal ``coarse_channels``.

Source: arXiv:2209.12866; official code poppinace/sapa (LICENCE: MIT; its README: "for
academic purposes only"; CUDA-only kernels). rtseg's code is its own.
"""

from __future__ import annotations

import torch
from torch import nn

from .reassembly import reassemble, reassembly_macs, window_similarity


def _project(norm: nn.LayerNorm, linear: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """``linear(norm(·))`` per pixel: B×C×H×W → B×d×H×W."""
    return linear(norm(x.permute(0, 2, 3, 1))).permute(0, 3, 1, 2)


class SAPA(nn.Module):
    """SAPA-B upsampler.

    Args:
        coarse_channels: C of the map to upsample (keys and values).
        fine_channels: C_f of the guide (queries).
        channels: output channels; must equal ``coarse_channels`` (``None``: the same).
        k_up: attention window (odd).
        embedding: d, the query/key width.
        qkv_bias: biases of the query and key maps.

    Forward: ``coarse`` B×C×h×w, ``fine`` B×C_f×H×W → B×C×H×W.
    """

    def __init__(
        self,
        coarse_channels: int,
        fine_channels: int,
        channels: int | None = None,
        k_up: int = 5,
        embedding: int = 64,
        qkv_bias: bool = True,
    ) -> None:
        super().__init__()
        if channels not in (None, coarse_channels):
            raise ValueError(f"SAPA's values are its input: channels ({channels}) must equal "
                             f"coarse_channels ({coarse_channels})")
        if k_up % 2 == 0:
            raise ValueError(f"k_up must be odd, got {k_up}")
        self.k_up, self.embedding, self.channels = k_up, embedding, coarse_channels
        self.norm_fine = nn.LayerNorm(fine_channels)
        self.norm_coarse = nn.LayerNorm(coarse_channels)
        self.query = nn.Linear(fine_channels, embedding, bias=qkv_bias)
        self.key = nn.Linear(coarse_channels, embedding, bias=qkv_bias)
        for lin in (self.query, self.key):
            nn.init.trunc_normal_(lin.weight, std=0.02)
            if lin.bias is not None:
                nn.init.zeros_(lin.bias)

    def attention(self, coarse: torch.Tensor, fine: torch.Tensor) -> torch.Tensor:
        """Attention weights B×k²×H×W over each output pixel's window."""
        q = _project(self.norm_fine, self.query, fine)
        k = _project(self.norm_coarse, self.key, coarse)
        return torch.softmax(window_similarity(q, k, self.k_up), dim=1)

    def forward(self, coarse: torch.Tensor, fine: torch.Tensor) -> torch.Tensor:
        return reassemble(coarse, self.attention(coarse, fine), self.k_up)

    def uncounted_macs(self, inputs: tuple, out: torch.Tensor) -> int:
        """MACs of the windowed similarity (d) and the reassembly (C) (see
        :func:`rtseg.complexity.count_call_macs`)."""
        return reassembly_macs(self.channels + self.embedding, self.k_up, out)
