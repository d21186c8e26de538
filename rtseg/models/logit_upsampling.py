"""The last step of a network: its coarse class map up to the input size, by a named upsampler.

One module, one call::

    up = LogitUpsampler(name, num_classes, guide_channels, **options)
    logits = up(coarse, guide, size)
    # coarse B×K×h×w class scores, guide B×C_g×H_g×W_g (a finer feature), size (H, W)
    # → B×K×H×W

``guide`` is a feature on a grid finer than the class map (the peers pass their stride-4
feature); the class map is K channels and stays K channels: only upsamplers that resample their
input without projecting it fit this slot (:data:`LOGIT_UPSAMPLERS`):

* ``bilinear``: ``resize(coarse, size)``; no parameters, ``guide`` unused. The official
  networks' own last step.
* ``gum``: :class:`rtseg.upsample.GUM` with ``coarse_channels = K`` and ``fine_channels = C_g``,
  called with ``size=size`` as GUN calls it: the offset table is predicted on the guide's grid
  (``guidance="fusion"`` by default: from the class map and the guide) and resized to (H, W),
  so the class map is sampled at the input size directly.
* ``dysample``, ``carafe``, ``sapa``: ×2 modules (:class:`~rtseg.upsample.DySample`,
  :class:`~rtseg.upsample.CARAFE`, :class:`~rtseg.upsample.SAPA`). Each upsamples the class
  map onto the guide's grid, the size it supports (the guide is about twice the class map: for
  the peers stride 4 from stride 8; any H_g×W_g works as in their pairwise slot), then a
  bilinear resize finishes to (H, W). SAPA reads the guide as its queries; DySample and
  CARAFE read only its size. DySample here defaults to ``groups=1`` (one sampling field for
  all K classes: K is any number, while its pairwise default of 4 groups needs K divisible by
  4).

The rest of :data:`rtseg.upsample.UPSAMPLERS` does not fit: ``bilinear`` there (the FPN's
``BilinearUpsample``), ``gai``, ``gai_nonlocal`` and ``fast_attention`` project and fuse features
through BN and ReLU (no longer class scores), ``fade`` needs a guide with the class map's
channels, ``ifa`` decodes a list of feature levels. Asking for one raises :class:`ConfigError`;
an unknown name :class:`UnknownNameError`; both list the names that fit.

``options`` go to the upsampler's constructor (GUM's ``guidance``/``hidden``, DySample's
``style``/``groups``/``dyscope``, CARAFE's ``k_up``/``k_enc``/``compressed``, SAPA's
``k_up``/``embedding``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import ConfigError, UnknownNameError
from ..layers import resize
from ..upsample import PAIRWISE, UPSAMPLERS

LOGIT_UPSAMPLERS = ("bilinear", "gum", "dysample", "carafe", "sapa")


def check_logit_upsampler(name: str) -> None:
    """Raise unless ``name`` is one of :data:`LOGIT_UPSAMPLERS` (the message lists them)."""
    if name in LOGIT_UPSAMPLERS:
        return
    fits = ", ".join(LOGIT_UPSAMPLERS)
    if name in UPSAMPLERS:
        raise ConfigError(f"upsampler {name!r} does not fit the class-map slot (it does not "
                          f"resample K class scores into K class scores); upsamplers that "
                          f"fit: {fits}")
    raise UnknownNameError(f"unknown upsampler {name!r}; upsamplers that fit the class-map "
                           f"slot: {fits}")


class LogitUpsampler(nn.Module):
    """The coarse class map to the requested size by the upsampler ``name``.

    Args:
        name: one of :data:`LOGIT_UPSAMPLERS`.
        num_classes: K, the channels of the class map (in and out).
        guide_channels: C_g of the guide feature.
        align_corners: the convention of the bilinear resizes (``bilinear``'s, and the last
            step after a ×2 module); True only for official-compatible switches.
        **options: the upsampler's constructor options.

    Forward: ``coarse`` B×K×h×w, ``guide`` B×C_g×H_g×W_g, ``size`` (H, W) → B×K×H×W.
    """

    def __init__(self, name: str, num_classes: int, guide_channels: int,
                 align_corners: bool = False, **options: Any) -> None:
        super().__init__()
        check_logit_upsampler(name)
        self.name = name
        self.align_corners = align_corners
        if name == "bilinear":
            if options:
                raise ConfigError(f"upsampler 'bilinear' takes no options, got {sorted(options)}")
            self.up = None
        else:
            if name == "dysample":
                options = {"groups": 1, **options}
            self.up = PAIRWISE[name](num_classes, guide_channels, num_classes, **options)

    def extra_repr(self) -> str:
        return f"name={self.name!r}"

    def forward(self, coarse: torch.Tensor, guide: torch.Tensor,
                size: tuple[int, int] | torch.Size) -> torch.Tensor:
        size = (size[0], size[1])
        if self.up is None:
            return resize(coarse, size, self.align_corners)
        if self.name == "gum":
            return self.up(coarse, guide, size=size)
        return resize(self.up(coarse, guide), size, self.align_corners)
