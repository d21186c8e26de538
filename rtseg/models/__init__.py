"""Networks, each registered by name (see :func:`rtseg.list_models`)."""

from .base import SegmentationModel
from .bisenetv2 import BiSeNetV2
from .ddrnet import DDRNet
from .fanet import FANet
from .fanet_temp import FANetTemp
from .fpn import FPN
from .gain import GAIN, GAINDF2
from .gun import GUN
from .ifanet import IFANet
from .logit_upsampling import LOGIT_UPSAMPLERS, LogitUpsampler
from .pidnet import PIDNet
from .stdc import STDCSeg

GAINLight = GAINDF2  # one-release alias: the class registered as gain_df2

__all__ = [
    "BiSeNetV2", "DDRNet", "FANet", "FANetTemp", "FPN", "GAIN", "GAINDF2", "GUN", "IFANet",
    "LOGIT_UPSAMPLERS", "LogitUpsampler", "PIDNet", "STDCSeg", "SegmentationModel",
]
