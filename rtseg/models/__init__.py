"""Networks, each registered by name (see :func:`rtseg.list_models`)."""

from .base import SegmentationModel
from .fanet import FANet
from .fpn import FPN
from .fuse import count_bn, fold_batchnorm
from .gain import GAIN
from .gun import GUN
from .ifanet import IFANet

__all__ = [
    "FANet", "FPN", "GAIN", "GUN", "IFANet", "SegmentationModel", "count_bn", "fold_batchnorm",
]
