"""CARAFE, Content-Aware ReAssembly of FEatures (Wang et al., ICCV 2019), in pure PyTorch.

Computation (coarse ``x`` B×C×h×w → B×C×H×W)::

    m = Conv_{k_enc}(Conv1×1(x))                 B×(k_up²·s²)×h×w   channel compressor, encoder
    m = pixel_shuffle(m, s)                      B×k_up²×sh×sw      one kernel per output pixel
    K = softmax over the k_up² channels          (resized to H×W first when H×W ≠ sh×sw)
    out(i, j) = Σ_{a,b} K_{a,b}(i, j) · x(u_i + a − r, v_j + b − r),   r = (k_up − 1)/2

``(u_i, v_j)`` is the *source cell* of output pixel (i, j): ``u_i = floor((i + 0.5)·h/H)``, the
coarse cell containing the output cell's centre (rtseg's cell-centre convention; equal to
``F.interpolate(mode="nearest-exact")`` and, at H = s·h, to the official ``i // s``).
Neighbours outside the map count as zero (the official CUDA kernel skips them; the kernel is
still normalised over all k_up² taps).

Defaults as the paper and mmcv's ``CARAFEPack``: k_up = 5, k_enc = 3, 64 compressed channels,
one kernel group, xavier-uniform convolutions with the encoder drawn from N(0, 0.001²) and zero
biases: an untrained CARAFE is close to a 5×5 box filter around the nearest source cell.

In the pairwise slot: CARAFE has no guidance input. It reads ``fine`` only for its size (H, W),
and, like GUM, it reassembles its input without a projection: ``channels`` must equal
``coarse_channels``. ``scale`` (s = 2) fixes the encoder's output channels; sizes other than
s·h (odd inputs: 2h − 1 on ResNets, 2h + 1 on EfficientNet-Lite) get the predicted kernel logits
bilinearly resized to H×W before the softmax — a choice the paper leaves open (it only upsamples
by integer factors).

The reassembly itself (its fast paths and their backward) is
:mod:`rtseg.upsample.reassembly`, shared with FADE and SAPA.

Sources: the paper (arXiv:1905.02188) and the official code (myownskyW7/CARAFE, no licence
file; mmcv ``ops.carafe``, Apache-2.0), both CUDA-only. rtseg's code is its own.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .cells import bilinear_to
from .reassembly import reassemble, reassembly_macs


class CARAFE(nn.Module):
    """CARAFE upsampler in the pairwise slot (``fine`` gives only the output size).

    Args:
        coarse_channels: C of the map to upsample.
        fine_channels: ignored (no guidance).
        channels: output channels; must equal ``coarse_channels`` (``None``: the same).
        scale: nominal factor s (kernels predicted for an s·h × s·w grid).
        k_up: reassembly window (odd).
        k_enc: content-encoder kernel (odd).
        compressed: channels of the channel compressor.

    Forward: ``coarse`` B×C×h×w, ``fine`` B×C_f×H×W → B×C×H×W.
    """

    guided = False

    def __init__(
        self,
        coarse_channels: int,
        fine_channels: int,
        channels: int | None = None,
        scale: int = 2,
        k_up: int = 5,
        k_enc: int = 3,
        compressed: int = 64,
    ) -> None:
        super().__init__()
        del fine_channels
        if channels not in (None, coarse_channels):
            raise ValueError(f"CARAFE reassembles its input: channels ({channels}) must equal "
                             f"coarse_channels ({coarse_channels})")
        if k_up % 2 == 0 or k_enc % 2 == 0:
            raise ValueError(f"k_up and k_enc must be odd, got {k_up} and {k_enc}")
        self.scale, self.k_up, self.channels = scale, k_up, coarse_channels
        self.compress = nn.Conv2d(coarse_channels, compressed, 1)
        self.encode = nn.Conv2d(compressed, k_up * k_up * scale * scale, k_enc,
                                padding=k_enc // 2)
        nn.init.xavier_uniform_(self.compress.weight)
        nn.init.zeros_(self.compress.bias)
        nn.init.normal_(self.encode.weight, 0.0, 0.001)
        nn.init.zeros_(self.encode.bias)

    def kernels(self, coarse: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Normalised reassembly kernels B×k_up²×H×W."""
        logits = F.pixel_shuffle(self.encode(self.compress(coarse)), self.scale)
        return torch.softmax(bilinear_to(logits, size), dim=1)

    def forward(self, coarse: torch.Tensor, fine: torch.Tensor) -> torch.Tensor:
        size = (fine.shape[-2], fine.shape[-1])
        return reassemble(coarse, self.kernels(coarse, size), self.k_up)

    def uncounted_macs(self, inputs: tuple, out: torch.Tensor) -> int:
        """MACs of the reassembly (see :func:`rtseg.complexity.count_call_macs`)."""
        return reassembly_macs(self.channels, self.k_up, out)
