"""Deployment: the exported-file format and everything that writes, runs or shrinks it.

* :mod:`~rtseg.deploy.api`: :func:`rtseg.export`, the one call that exports a checkpoint,
  Segmenter, module or model name with metadata, checks, int8 and fp16, returning an
  :class:`ExportReport` (``rtseg export`` is its command-line face);
* :mod:`~rtseg.deploy.export`: ONNX graph export and the checks against PyTorch;
* :mod:`~rtseg.deploy.torch_files`: TorchScript and torch.export files;
* :mod:`~rtseg.deploy.metadata`: the ONNX metadata ``rtseg.load`` needs (writing, reading);
* :mod:`~rtseg.deploy.runtimes`: ONNX Runtime and OpenVINO behind the Segmenter, the one
  ONNX Runtime session set-up (:func:`ort_session`) and the ``auto`` policy;
* :mod:`~rtseg.deploy.quantize`: int8 static quantisation with calibration, fp16 conversion;
* :mod:`~rtseg.deploy.fuse`: BatchNorm folding (``rtseg bench --fold-bn``).

Layering: this package may import models, data, training (checkpoints), inference and the
Segmenter; none of ``rtseg.models``, ``rtseg.upsample`` or ``rtseg.data`` imports it. The
function itself is exported only as ``rtseg.export`` (a name ``export`` here would clash with
the submodule).
"""

from .export import Check, ExportCheckError
from .metadata import is_exported, make_metadata, read_metadata, write_metadata
from .report import ExportReport
from .runtimes import (
    BACKENDS,
    RUNTIMES,
    OnnxRuntimeModel,
    OpenVINOModel,
    auto_order,
    installed,
    ort_session,
    pick_backend,
    require,
)

__all__ = [
    "BACKENDS", "RUNTIMES", "Check", "ExportCheckError", "ExportReport", "OnnxRuntimeModel",
    "OpenVINOModel", "auto_order", "installed", "is_exported", "make_metadata", "ort_session",
    "pick_backend", "read_metadata", "require", "write_metadata",
]
