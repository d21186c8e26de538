"""Backbones: each returns its feature levels and declares ``out_channels``/``out_strides``.

The ResNets return ``[c2, c3, c4, c5]`` (four levels); DFNetV2 returns ``[c3, c4, c5]``.
"""

from ..errors import UnknownNameError
from .dfnet import DFNetV2, dfnetv2
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

BACKBONES = {**_RESNETS, "dfnetv2": dfnetv2}


def create_backbone(name: str, pretrained: str | None = None, **kwargs) -> ResNet | DFNetV2:
    """Build backbone ``name`` (one of ``BACKBONES``), optionally loading a local weights file."""
    if name not in BACKBONES:
        raise UnknownNameError(
            f"unknown backbone {name!r}; available: {', '.join(sorted(BACKBONES))}")
    return BACKBONES[name](pretrained=pretrained, **kwargs)


__all__ = [
    "BACKBONES", "DFNetV2", "ResNet", "create_backbone", "dfnetv2", "load_state_dict_checked",
    "read_state_dict", "resnet18", "resnet18_deep", "resnet18_fanet", "resnet34",
    "resnet34_fanet", "resnet50", "resnet50_deep",
]
