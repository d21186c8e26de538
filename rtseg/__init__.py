"""rtseg: low-latency semantic segmentation with learned feature upsamplers.

>>> import rtseg
>>> seg = rtseg.load("runs/my-run/best.pt")       # a trained checkpoint → Segmenter
>>> labels = seg("street.png")                    # H×W class indices
>>> model = rtseg.create_model("fpn_r18_gai", num_classes=19)
>>> rtseg.export("runs/my-run/best.pt", "model.onnx")  # checked ONNX that rtseg.load reads
"""

from . import models  # noqa: F401  (registers the networks
from .api import evaluate, load, train
from .deploy.api import export
from .errors import RtsegError
from .registry import create_model, list_models, model_options, register_model
from .segmenter import Segmenter

__version__ = "0.1.0"
__all__ = [
    "RtsegError", "Segmenter", "__version__", "create_model", "evaluate", "export", "list_models",
    "load", "model_options", "register_model", "train",
]
