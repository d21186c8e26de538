"""rtseg: low-latency semantic segmentation with learned feature upsamplers.

>>> import rtseg
>>> model = rtseg.create_model("fpn_r18_gai", num_classes=19)
"""

from . import models  # noqa: F401  (registers the networks)
from .registry import create_model, list_models, register_model

__version__ = "0.1.0"
__all__ = ["__version__", "create_model", "list_models", "register_model"]
