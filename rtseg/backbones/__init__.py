"""Backbones: each returns ``[c2, c3, c4, c5]`` and declares ``out_channels``/``out_strides``."""

from ..errors import UnknownNameError
from .resnet import (
    BACKBONES,
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


def create_backbone(name: str, pretrained: str | None = None, **kwargs) -> ResNet:
    """Build backbone ``name`` (one of ``BACKBONES``), optionally loading a local weights file."""
    if name not in BACKBONES:
        raise UnknownNameError(
            f"unknown backbone {name!r}; available: {', '.join(sorted(BACKBONES))}")
    return BACKBONES[name](pretrained=pretrained, **kwargs)


__all__ = [
    "BACKBONES", "ResNet", "create_backbone", "load_state_dict_checked", "read_state_dict",
    "resnet18", "resnet18_deep", "resnet18_fanet", "resnet34", "resnet34_fanet", "resnet50",
    "resnet50_deep",
]
