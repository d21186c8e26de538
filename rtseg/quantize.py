"""Deprecated alias of :mod:`rtseg.deploy.quantize`, kept for one release (issue 27 moved it)."""

import warnings

from .deploy.quantize import (  # noqa: F401
    agreement,
    calibration_batches,
    convert_fp16,
    float_nodes,
    inline_constant_identities,
    quantize_int8,
)

warnings.warn("rtseg.quantize is deprecated: import from rtseg.deploy.quantize",
              DeprecationWarning, stacklevel=2)
