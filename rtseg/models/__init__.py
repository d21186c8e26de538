"""Networks, each registered by name (see :func:`rtseg.list_models`)."""

from .base import SegmentationModel
from .fanet import FANet
from .fanet_temp import FANetTemp
from .fpn import FPN
from .gain import GAIN, GAINLight
from .gun import GUN
from .ifanet import IFANet

__all__ = [
    "FANet", "FANetTemp", "FPN", "GAIN", "GAINLight", "GUN", "IFANet", "SegmentationModel",
]
