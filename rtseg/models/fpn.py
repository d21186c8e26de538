"""``fpn_r18_<up>``, ``fpn_lite0_<up>``: one head, one backbone, one recipe; only the upsampler
changes.

ResNet-18 (torchvision layout; ``fpn_lite0_*``: EfficientNet-Lite0, 24/40/112/1280 channels) → 1×1
laterals to 128 on c2..c5 (strides 4..32) → top-down path
in which the upsampler does every coarse-to-fine step::

    p5 = l5
    p_i = U_i(p_{i+1}, l_i) + l_i        for i = 4, 3, 2   (pairwise upsamplers)
    p2  = IFA([l2, l3, l4, l5], size of l2)                 (IFA reads all levels at once)

→ CBR3×3 → dropout → 1×1 classifier at stride 4 → bilinear to the input. Auxiliary heads on l3
and l4 (weights 0.4, 0.4) sit *before* the upsamplers so that they are identical in every
variant. With ``U = bilinear`` this is a plain FPN whose upsampling carries GAI's 1×1
projections; each other variant replaces exactly that module.
"""

from __future__ import annotations

import torch
from torch import nn

from ..backbones import ResNet, create_backbone
from ..errors import ConfigError, UnknownNameError
from ..layers import ConvBNAct, SegHead
from ..registry import register_model
from ..upsample import IFA, UPSAMPLERS, create_upsampler
from .base import ModelOutput, SegmentationModel


class FPN(SegmentationModel):
    """The shared comparison network.

    Args:
        num_classes: K.
        backbone: 4-level backbone.
        upsampler: one of :data:`rtseg.upsample.UPSAMPLERS`.
        channels: head width.
        aux: build the two auxiliary heads.
        upsampler_kwargs: options of the pairwise upsampler (e.g. GUM's ``guidance``).
    """

    aux_weights = (0.4, 0.4)

    def __init__(
        self,
        num_classes: int,
        backbone: ResNet,
        upsampler: str,
        channels: int = 128,
        aux: bool = True,
        upsampler_kwargs: dict | None = None,
    ) -> None:
        super().__init__()
        if upsampler not in UPSAMPLERS:
            raise UnknownNameError(
                f"unknown upsampler {upsampler!r}; available: {', '.join(UPSAMPLERS)}")
        c = channels
        self.upsampler = upsampler
        self.backbone = backbone
        self.lateral = nn.ModuleList(ConvBNAct(ch, c, 1) for ch in backbone.out_channels)
        if upsampler == "ifa":
            self.ifa = IFA([c] * 4, c, hidden=(2 * c, c, c), **(upsampler_kwargs or {}))
        else:
            self.top_down = nn.ModuleList(create_upsampler(upsampler, c, c, c,
                                                           **(upsampler_kwargs or {}))
                                          for _ in range(3))
        self.head = nn.Sequential(ConvBNAct(c, c, 3), nn.Dropout2d(0.1),
                                  nn.Conv2d(c, num_classes, 1))
        self.aux_heads = (
            nn.ModuleList(SegHead(c, c // 2, num_classes) for _ in range(2)) if aux else None
        )
        if not aux:
            self.aux_weights = ()

    def decode(self, laterals: list[torch.Tensor]) -> torch.Tensor:
        """Stride-4 feature B×C×H/4×W/4 from the laterals ``[l2, l3, l4, l5]``."""
        if self.upsampler == "ifa":
            return self.ifa(laterals, tuple(laterals[0].shape[-2:]))
        p = laterals[3]
        for up, lat in zip(self.top_down, reversed(laterals[:3]), strict=True):
            p = up(p, lat) + lat
        return p

    def forward(self, x: torch.Tensor) -> ModelOutput:
        laterals = [lat(f) for lat, f in zip(self.lateral, self.backbone(x), strict=True)]
        logits = self.head(self.decode(laterals))
        aux = None
        if self.training and self.aux_heads is not None:
            aux = [h(lat) for h, lat in zip(self.aux_heads, laterals[1:3], strict=True)]
        return self.output(x, logits, aux)


def _register_fpn(upsampler: str, prefix: str, default_backbone: str) -> None:
    @register_model(f"{prefix}_{upsampler}")
    def build(num_classes: int, pretrained_backbone: str | None = None, aux: bool = True, *,
              channels: int = 128, backbone: str = default_backbone,
              upsampler_kwargs: dict | None = None) -> FPN:
        net = create_backbone(backbone, pretrained_backbone)
        if len(net.out_channels) != 4:
            raise ConfigError(f"the FPN needs a 4-level backbone; {backbone!r} has "
                              f"{len(net.out_channels)} levels")
        return FPN(num_classes, net, upsampler, channels=channels, aux=aux,
                   upsampler_kwargs=upsampler_kwargs)

    build.__doc__ = (
        f"FPN on {default_backbone} with the ``{upsampler}`` upsampler at every step.\n\n"
        "Options: ``channels`` (head width, 128), ``backbone`` (any 4-level name of "
        "``rtseg.backbones.BACKBONES``), ``upsampler_kwargs`` (passed to every upsampler, e.g. "
        "``{'guidance': 'high_res'}`` for GUM). ``pretrained_backbone='imagenet'`` starts the "
        "backbone from ImageNet.")


for _name in UPSAMPLERS:
    _register_fpn(_name, "fpn_r18", "resnet18")
    _register_fpn(_name, "fpn_lite0", "efficientnet_lite0")
