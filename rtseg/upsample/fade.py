"""FADE, Fusing the Assets of Decoder and Encoder (Lu et al., ECCV 2022; IJCV 2024), and
FADE-Lite (``lite=True``), in pure PyTorch.

FADE upsamples the coarse decoder feature ``x`` (B×C×h×w) with CARAFE-style kernels generated
jointly from ``x`` and the fine encoder feature ``f`` (B×C×H×W), then gates::

    K = softmax_{k²}( E(P_f(f)) + up(E(P_x(x))) )       "semi-shift" convolution, B×k²×H×W
    G = sigmoid(up(Conv1×1(x)))                          gate, B×1×H×W
    out = G·f + (1 − G)·reassemble(x, K)

``P_f`` (1×1, with bias) and ``P_x`` (1×1, no bias) compress both inputs to d = 64 channels and
one 3×3 convolution ``E`` (d → k², with bias) encodes both — the same weights on the fine and on
the coarse grid, which is the "semi-shift" sharing. ``up`` is nearest upsampling and
``reassemble`` CARAFE's k×k reassembly (:func:`rtseg.upsample.reassembly.reassemble`, zero outside
the map), k = 5: at H = 2h, W = 2w its phase path (plain slices of the padded coarse map, no
gather) in inference and in training, forward and backward; at odd sizes, under tracing and
inside :func:`rtseg.layers.reference_paths` the gather loop (:mod:`rtseg.upsample.reassembly`).
FADE-Lite compresses both inputs straight to k² channels and makes ``E`` a depthwise 3×3
convolution (k² groups).

Choices the paper leaves open, taken from the official pure-PyTorch files
(``pytorch_implementation/FADE_L2H.py``): softmax over the k² kernel taps; ``E``'s bias
counted twice (once per grid); xavier-uniform weights, zero biases; the gate from the coarse
feature. For any output size rtseg maps output pixel i to the source cell
``floor((i + 0.5)·h/H)`` for ``up`` and for the reassembly centre (the official 2× code's
``i // 2`` at H = 2h; odd sizes 2h ± 1 need the general rule).

In the pairwise slot: ``fine`` is the encoder feature; the gate mixes it with the upsampled
coarse one, so ``fine_channels``, ``coarse_channels`` and ``channels`` must be equal, and there is
no projection. In rtseg's FPN (``p = U(p', l) + l``) the lateral then enters twice: through
the gate and through the head's sum.

Source: arXiv:2207.10392 (ECCV 2022; the IJCV 2024 version extends it); official code poppinace/fade
(LICENSE: MIT; its README: "for academic purposes only"). rtseg's code is its own.
"""

from __future__ import annotations

import torch
from torch import nn

from .cells import nearest_up
from .reassembly import reassemble, reassembly_macs


class FADE(nn.Module):
    """FADE (or FADE-Lite) upsampler.

    Args:
        coarse_channels: C of the decoder map to upsample.
        fine_channels: C of the encoder map; must equal ``coarse_channels``.
        channels: output channels; must equal ``coarse_channels`` (``None``: the same).
        k_up: reassembly window (odd).
        k_enc: encoder kernel (odd).
        embedding: d, channels of the compressors (FADE only).
        lite: FADE-Lite (compress to k², depthwise encoder).

    Forward: ``coarse`` B×C×h×w, ``fine`` B×C×H×W → B×C×H×W.
    """

    def __init__(
        self,
        coarse_channels: int,
        fine_channels: int,
        channels: int | None = None,
        k_up: int = 5,
        k_enc: int = 3,
        embedding: int = 64,
        lite: bool = False,
    ) -> None:
        super().__init__()
        if fine_channels != coarse_channels or channels not in (None, coarse_channels):
            raise ValueError(f"FADE gates the fine feature with the upsampled coarse one: "
                             f"fine_channels ({fine_channels}) and channels ({channels}) must "
                             f"equal coarse_channels ({coarse_channels})")
        if k_up % 2 == 0 or k_enc % 2 == 0:
            raise ValueError(f"k_up and k_enc must be odd, got {k_up} and {k_enc}")
        taps = k_up * k_up
        d = taps if lite else embedding
        self.k_up, self.lite, self.channels = k_up, lite, coarse_channels
        self.gate = nn.Conv2d(coarse_channels, 1, 1)
        self.compress_fine = nn.Conv2d(fine_channels, d, 1)
        self.compress_coarse = nn.Conv2d(coarse_channels, d, 1, bias=False)
        self.encode = nn.Conv2d(d, taps, k_enc, padding=k_enc // 2, groups=taps if lite else 1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def kernels(self, coarse: torch.Tensor, fine: torch.Tensor) -> torch.Tensor:
        """Normalised reassembly kernels B×k²×H×W (the semi-shift convolution)."""
        logits = self.encode(self.compress_fine(fine))
        return torch.softmax(
            logits + nearest_up(self.encode(self.compress_coarse(coarse)), logits.shape[-2:]),
            dim=1)

    def forward(self, coarse: torch.Tensor, fine: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(nearest_up(self.gate(coarse), fine.shape[-2:]))
        up = reassemble(coarse, self.kernels(coarse, fine), self.k_up)
        return gate * fine + (1 - gate) * up

    def uncounted_macs(self, inputs: tuple, out: torch.Tensor) -> int:
        """MACs of the reassembly (see :func:`rtseg.complexity.count_call_macs`)."""
        return reassembly_macs(self.channels, self.k_up, out)


class FADELite(FADE):
    """:class:`FADE` with ``lite=True``."""

    def __init__(self, coarse_channels: int, fine_channels: int, channels: int | None = None,
                 k_up: int = 5, k_enc: int = 3) -> None:
        super().__init__(coarse_channels, fine_channels, channels, k_up, k_enc, lite=True)
