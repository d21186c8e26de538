"""Backbones: each returns its feature levels and declares ``out_channels``/``out_strides``.

The ResNets and EfficientNet-Lites return ``[c2, c3, c4, c5]`` (four levels); DFNetV2 returns
``[c3, c4, c5]``. ``pretrained="imagenet"`` finds ImageNet weights (:mod:`.hub`).
"""

from ..errors import UnknownNameError
from .dfnet import DFNetV2, dfnetv2
from .efficientnet_lite import BACKBONES as _LITES
from .efficientnet_lite import (
    EfficientNetLite,
    efficientnet_lite0,
    efficientnet_lite1,
    efficientnet_lite2,
)
from .resnet import (
    BACKBONES as _RESNETS,
)
from .resnet import (
    ResNet,
    load_state_dict_checked,
    read_state_dict,
    resnet18,
    resnet18_deep,
    resnet18_fanet,
    resnet34,
    resnet34_fanet,
    resnet50,
    resnet50_deep,
)

BACKBONES = {**_RESNETS, **_LITES, "dfnetv2": dfnetv2}


def create_backbone(
    name: str, pretrained: str | None = None, **kwargs
) -> ResNet | DFNetV2 | EfficientNetLite:
    """Build backbone ``name`` (one of ``BACKBONES``), optionally with weights: a local file, or
    ``"imagenet"`` (:mod:`rtseg.backbones.hub`)."""
    if name not in BACKBONES:
        raise UnknownNameError(
            f"unknown backbone {name!r}; available: {', '.join(sorted(BACKBONES))}")
    return BACKBONES[name](pretrained=pretrained, **kwargs)


__all__ = [
    "BACKBONES", "DFNetV2", "EfficientNetLite", "ResNet", "create_backbone", "dfnetv2",
    "efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2",
    "load_state_dict_checked", "read_state_dict", "resnet18", "resnet18_deep", "resnet18_fanet",
    "resnet34", "resnet34_fanet", "resnet50", "resnet50_deep",
]
