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

``output_stride=2`` (rtseg's option, EfficientNet-Lite backbones: their first stage gives 16
channels at stride 2) refines the logits once more at stride 2, as a residual::

    r = Conv1x1(CBR3x3(cat[z↑2, CBR1x1(c1)]))     z: the stride-4 logits, ↑2 bilinear to stride 2
    logits = z↑ + r↑                               ↑ bilinear to the input

with the CBRs ``fine_channels`` (32) wide and the last 1×1 layer initialised to zero, so the
refined network starts as exactly the stride-4 one (z goes to the input in one resize, as
there) and a trained stride-4 checkpoint fine-tunes into it (``init_from``). Why: a pole 2 px
wide at CamVid's 480×360 covers one stride-4 cell at the recipe's scale 2, and bilinear
interpolation of stride-4 logits smears it (the ImageNet issue's pole floor).
"""

from __future__ import annotations

import torch
from torch import nn

from ..backbones import ResNet, create_backbone
from ..errors import ConfigError, UnknownNameError
from ..layers import ConvBNAct, SegHead, resize
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
        output_stride: 4, or 2 with a 5-level backbone (stride 2 first): the residual
            refinement of the logits at stride 2 (module docstring).
        fine_channels: width of the refinement (``output_stride=2``).
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
        output_stride: int = 4,
        fine_channels: int = 32,
    ) -> None:
        super().__init__()
        if upsampler not in UPSAMPLERS:
            raise UnknownNameError(
                f"unknown upsampler {upsampler!r}; available: {', '.join(UPSAMPLERS)}")
        if output_stride not in (2, 4):
            raise ConfigError(f"output_stride must be 4 or 2, got {output_stride!r}")
        c = channels
        kwargs = upsampler_kwargs or {}
        self.upsampler = upsampler
        self.backbone = backbone
        self.refine = None
        if output_stride == 2:
            cf = fine_channels
            self.refine = nn.ModuleDict({
                "lateral": ConvBNAct(backbone.out_channels[0], cf, 1),
                "fuse": ConvBNAct(cf + num_classes, cf, 3),
                "out": nn.Conv2d(cf, num_classes, 1)})
            nn.init.zeros_(self.refine["out"].weight)
            nn.init.zeros_(self.refine["out"].bias)
        self.lateral = nn.ModuleList(ConvBNAct(ch, c, 1) for ch in backbone.out_channels[-4:])
        if upsampler == "ifa":
            self.ifa = IFA([c] * 4, c, hidden=(2 * c, c, c), **kwargs)
        else:
            self.top_down = nn.ModuleList(create_upsampler(upsampler, c, c, c, **kwargs)
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
        features = self.backbone(x)
        laterals = [lat(f) for lat, f in zip(self.lateral, features[-4:], strict=True)]
        logits = self.head(self.decode(laterals))
        if self.refine is not None:
            up = resize(logits, features[0].shape[-2:])
            fine = self.refine["lateral"](features[0])
            r = self.refine["out"](self.refine["fuse"](torch.cat([up, fine], dim=1)))
            size = x.shape[-2:]
            logits = (resize(logits, size, self.align_corners)
                      + resize(r, size, self.align_corners))
        aux = None
        if self.training and self.aux_heads is not None:
            aux = [h(lat) for h, lat in zip(self.aux_heads, laterals[1:3], strict=True)]
        return self.output(x, logits, aux)


def _register_fpn(upsampler: str, prefix: str, default_backbone: str) -> None:
    @register_model(f"{prefix}_{upsampler}")
    def build(num_classes: int, pretrained_backbone: str | None = None, aux: bool = True, *,
              channels: int = 128, backbone: str = default_backbone,
              upsampler_kwargs: dict | None = None, output_stride: int = 4,
              fine_channels: int = 32) -> FPN:
        if output_stride == 2 and not backbone.startswith("efficientnet_lite"):
            raise ConfigError(f"output_stride=2 needs a backbone with a stride-2 level "
                              f"(efficientnet_lite0/1/2), not {backbone!r}")
        net = create_backbone(backbone, pretrained_backbone,
                              **({"stride2": True} if output_stride == 2 else {}))
        levels = 5 if output_stride == 2 else 4  # stride 2 in front of strides 4..32
        if len(net.out_channels) != levels:
            raise ConfigError(f"the FPN needs a {levels}-level backbone; {backbone!r} has "
                              f"{len(net.out_channels)} levels")
        return FPN(num_classes, net, upsampler, channels=channels, aux=aux,
                   upsampler_kwargs=upsampler_kwargs, output_stride=output_stride,
                   fine_channels=fine_channels)

    build.__doc__ = (
        f"FPN on {default_backbone} with the ``{upsampler}`` upsampler at every step.\n\n"
        "Options: ``channels`` (head width, 128), ``backbone`` (any 4-level name of "
        "``rtseg.backbones.BACKBONES``), ``upsampler_kwargs`` (passed to every upsampler, e.g. "
        "``{'guidance': 'high_res'}`` for GUM), ``output_stride`` (4, or 2 on an "
        "EfficientNet-Lite backbone: the logits refined at stride 2, ``fine_channels`` wide). "
        "``pretrained_backbone='imagenet'`` starts the backbone from ImageNet.")


for _name in UPSAMPLERS:
    _register_fpn(_name, "fpn_r18", "resnet18")
    _register_fpn(_name, "fpn_lite0", "efficientnet_lite0")
