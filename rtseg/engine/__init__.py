"""Old home of training and inference, kept for one release: ``rtseg.engine.X`` still imports.

The modules moved by job: ``rtseg.training`` (trainer, config, checkpoint, loader, run log,
plot, weights), ``rtseg.inference`` (``tta`` — was ``inference`` —, evaluate, metrics, memory),
and ``rtseg.predict``, ``rtseg.demo``, ``rtseg.distributed`` at the top. Importing this package
warns once and makes each old module name an alias of its new module.
"""

from __future__ import annotations

import importlib
import sys
import warnings

_MOVED = {
    "trainer": "rtseg.training.trainer", "config": "rtseg.training.config",
    "checkpoint": "rtseg.training.checkpoint", "loader": "rtseg.training.loader",
    "runlog": "rtseg.training.runlog", "plot": "rtseg.training.plot",
    "weights": "rtseg.training.weights", "inference": "rtseg.inference.tta",
    "evaluate": "rtseg.inference.evaluate", "metrics": "rtseg.inference.metrics",
    "memory": "rtseg.inference.memory", "predict": "rtseg.predict", "demo": "rtseg.demo",
    "distributed": "rtseg.distributed",
}

warnings.warn("rtseg.engine is deprecated: its modules moved to rtseg.training, "
              "rtseg.inference, rtseg.predict, rtseg.demo and rtseg.distributed",
              DeprecationWarning, stacklevel=2)

# `import rtseg.engine.metrics` finds the module in sys.modules; `rtseg.engine.metrics` the name.
for _old, _new in _MOVED.items():
    globals()[_old] = sys.modules.setdefault(f"{__name__}.{_old}", importlib.import_module(_new))
