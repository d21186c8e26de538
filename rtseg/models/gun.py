"""GUN: Guided Upsampling Network (Mazzini, BMVC 2018), rebuilt without official code.

No official implementation exists, and the only paper source here is a summary of the paper
(seeds/003: a multi-resolution encoder with a low- and a mid-resolution branch and shared
weights, GUM with a Guidance Offset Table predicted by a large-rf, high-res or fusion Guidance
Module, fusion the best trade-off at 69.64 % val mIoU and 33.3 FPS, batch 8, random scaling).
Every other choice below is rtseg's; each states why.

* **Encoder: ResNet-18 (torchvision layout)** (rtseg's choice; the summary does not name the
  paper's encoder): it keeps GUN comparable with the other rtseg networks and lets ImageNet
  files load.
* **Two branches, shared weights.** The *high-resolution* branch runs the stem, layer1 and
  layer2 on the full input (stride 8, 128 channels: detail). The *low-resolution* branch runs
  the same stem, layer1 and layer2 (the same modules, so the same weights: the summary reports
  sharing better) on the input downsampled by 2, then layer3 and a dilated layer4 (stride 1,
  dilation 2), ending at stride 32 of the full input with 512 channels (context). Running the
  deep layers only on the half-size input is what makes the network fast.
* **Fusion at stride 8.** Context is projected to 128, given a global-pooling term, upsampled,
  added to the projected detail, and a 3×3 conv fuses them; classes are predicted at stride 8
  (rtseg's choice; the output stride of the paper's network is not in the sources here).
* **GUM as the final upsampler, fusion guidance.** The stride-8 class scores are upsampled ×8
  by GUM. Its large-receptive-field guide is the fused stride-8 feature; its high-resolution
  guide is the stride-4 layer1 output of the high-resolution branch; the offset table is
  predicted at stride 4 and resized to the input (offsets are in coarse pixels, so resizing
  keeps their meaning). Offsets start at zero: an untrained GUN upsamples bilinearly.
* **No auxiliary head** (rtseg's choice; the sources here mention none, which does not show
  the paper has none).
"""

from __future__ import annotations

import torch
from torch import nn

from ..backbones import ResNet, resnet18
from ..layers import ConvBNAct, resize
from ..registry import register_model
from ..upsample import GUM
from .base import ModelOutput, SegmentationModel


class GUN(SegmentationModel):
    """Two-branch shared-weight encoder, class scores at stride 8, GUM to the input size.

    Args:
        num_classes: K.
        backbone: ResNet with layer4 dilated (stride 1) so the low branch ends at stride 16 of
            its half-size input.
        channels: fusion width.
        guidance: GUM guidance variant ("fusion": the summary's best trade-off).
    """

    aux_weights = ()

    def __init__(
        self, num_classes: int, backbone: ResNet, channels: int = 128, guidance: str = "fusion"
    ) -> None:
        super().__init__()
        c2, c3, _, c5 = backbone.out_channels
        self.backbone = backbone
        self.detail = ConvBNAct(c3, channels, 1)
        self.context = ConvBNAct(c5, channels, 1)
        self.pooled = ConvBNAct(channels, channels, 1)
        self.fuse = ConvBNAct(channels, channels, 3)
        self.classifier = nn.Sequential(nn.Dropout2d(0.1), nn.Conv2d(channels, num_classes, 1))
        self.gum = GUM(num_classes, c2, guidance=guidance, guide_channels=channels)

    def _stem_to_layer2(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b = self.backbone
        c2 = b.layer1(b.maxpool(b.relu(b.bn1(b.conv1(x)))))
        return c2, b.layer2(c2)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        high2, high3 = self._stem_to_layer2(x)
        # The half-size input by an explicit size (at least 1 pixel), not scale_factor=0.5:
        # an input side of 1 px would give an empty image, and ONNX runtimes such as OpenCV
        # DNN mishandle a traced scale factor. Both agree at even sizes.
        h, w = x.shape[-2:]
        half = resize(x, (max(h // 2, 1), max(w // 2, 1)))
        _, low3 = self._stem_to_layer2(half)
        low5 = self.backbone.layer4(self.backbone.layer3(low3))
        ctx = self.context(low5)
        ctx = ctx + self.pooled(ctx.mean((2, 3), keepdim=True))
        fused = self.fuse(self.detail(high3) + resize(ctx, high3.shape[-2:]))
        scores = self.classifier(fused)
        logits = self.gum(scores, high2, size=tuple(x.shape[-2:]), coarse_guide=fused)
        return self.output(x, logits, None)


@register_model("gun")
def gun(num_classes: int, pretrained_backbone: str | None = None, aux: bool = True, *,
        channels: int = 128, guidance: str = "fusion") -> GUN:
    """GUN with fusion guidance (the summary's best trade-off; its table gives GUN 70.4 % mIoU
    at 33.3 FPS on Cityscapes test with subsampling 2).

    Options: ``channels`` (fusion width), ``guidance`` (GUM's variant: ``fusion``,
    ``large_rf`` or ``high_res``).
    """
    del aux  # GUN has no auxiliary head
    backbone = resnet18(pretrained_backbone, strides=(1, 2, 2, 1),
                        dilations=((1, 1), (1, 1), (1, 1), (2, 2)))
    return GUN(num_classes, backbone, channels=channels, guidance=guidance)
