"""Feature upsamplers behind one interface.

Pairwise upsamplers fuse a coarse feature onto a finer guide grid::

    up = create_upsampler(name, coarse_channels, fine_channels, channels)
    out = up(coarse, fine)          # B×C_c×h×w, B×C_f×H×W → B×channels×H×W

IFA instead maps a list of levels to any requested size: ``IFA(in_channels, out)(features,
size)``. Convention everywhere: pixel values sit at cell centres (``align_corners=False``).
"""

from __future__ import annotations

from torch import nn

from ..errors import UnknownNameError
from .bilinear import BilinearUpsample
from .carafe import CARAFE
from .dysample import DySample
from .fade import FADE, FADELite
from .fast_attention import FastAttention, FastAttentionUpsample, fast_attention
from .gai import GAI, GAINNonLocal, criss_cross_attention, nonlocal_attention
from .gum import GUM, guided_sample
from .ifa import IFA
from .reassembly import reassemble, window_similarity
from .sapa import SAPA

PAIRWISE = {
    "bilinear": BilinearUpsample,
    "gai": GAI,
    "gai_nonlocal": GAINNonLocal,
    "fast_attention": FastAttentionUpsample,
    "gum": GUM,
    "dysample": DySample,
    "carafe": CARAFE,
    "fade": FADE,
    "sapa": SAPA,
}
UPSAMPLERS = (*PAIRWISE, "ifa")


def create_upsampler(
    name: str, coarse_channels: int, fine_channels: int, channels: int, **kwargs
) -> nn.Module:
    """Build the pairwise upsampler ``name`` (one of ``PAIRWISE``)."""
    if name not in PAIRWISE:
        raise UnknownNameError(
            f"unknown pairwise upsampler {name!r}; available: {', '.join(PAIRWISE)}"
            + (" (ifa is multi-level: use rtseg.upsample.IFA)" if name == "ifa" else ""))
    return PAIRWISE[name](coarse_channels, fine_channels, channels, **kwargs)


# One-release aliases of the old class names ("GAINonLocal" read as "GAIN on local").
GAINonLocal = GAINNonLocal
GuidedUpsample = GUM

__all__ = [
    "CARAFE", "FADE", "GAI", "IFA", "PAIRWISE", "SAPA", "UPSAMPLERS", "BilinearUpsample",
    "DySample", "FADELite", "FastAttention", "FastAttentionUpsample", "GAINNonLocal",
    "GUM", "create_upsampler", "criss_cross_attention", "fast_attention",
    "guided_sample", "nonlocal_attention", "reassemble", "window_similarity",
]
