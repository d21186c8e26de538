"""Deprecated alias of :mod:`rtseg.deploy.runtimes` and :mod:`rtseg.deploy.metadata`, kept for
one release (issue 27 moved the exported-file format into :mod:`rtseg.deploy`)."""

import warnings

from .deploy.metadata import (  # noqa: F401
    METADATA_FORMAT,
    METADATA_KEYS,
    is_exported,
    make_metadata,
    read_metadata,
    write_metadata,
)
from .deploy.runtimes import (  # noqa: F401
    BACKENDS,
    OPENVINO_FIRST_FP32,
    RUNTIMES,
    OnnxRuntimeModel,
    OpenVINOModel,
    auto_order,
    installed,
    ort_session,
    pick_backend,
    require,
)

warnings.warn("rtseg.backends is deprecated: import from rtseg.deploy.runtimes (runtimes, "
              "auto policy) or rtseg.deploy.metadata (read_metadata, write_metadata)",
              DeprecationWarning, stacklevel=2)
