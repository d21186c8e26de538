"""The record of a run: ``log.jsonl`` always, TensorBoard scalars when asked for.

``log.jsonl`` holds one JSON object per logged step or evaluation (``kind``: ``train`` or
``val``, ``iter``, then the values) and is the record :mod:`rtseg.training.plot` reads. With
``tensorboard=True`` every numeric value is also written as the scalar ``<kind>/<name>`` at step
``iter`` under ``<run>/tb`` (``tensorboard --logdir runs``); that needs the ``tensorboard``
package (``pip install "rtseg[tensorboard]"``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ..errors import UsageError


def _iter_of(line: str) -> float:
    """The ``iter`` of a log line; infinity for a torn line (a kill mid-write), so it goes."""
    try:
        return int(json.loads(line).get("iter", 0))
    except (ValueError, AttributeError, TypeError):
        return math.inf


class RunLog:
    """Append-only JSON lines, plus optional TensorBoard scalars; only rank 0 writes."""

    def __init__(self, path: Path, enabled: bool = True, tensorboard: bool = False,
                 start: int = 0) -> None:
        """``start``: the iteration a resumed run continues from; the rows and TensorBoard
        events after it (iterations a kill lost, which the run replays) are dropped."""
        self.path, self.enabled, self.writer = Path(path), enabled, None
        self.truncate_after(start)
        if enabled and tensorboard:
            self.require_tensorboard()
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.path.parent / "tb"),
                                        purge_step=start + 1 if start else None)

    @staticmethod
    def require_tensorboard() -> None:
        """UsageError unless TensorBoard's writer can be imported."""
        try:
            from torch.utils.tensorboard import SummaryWriter  # noqa: F401
        except ImportError:
            raise UsageError("tensorboard=true needs the tensorboard package: "
                             'pip install "rtseg[tensorboard]"') from None

    def write(self, kind: str, iter: int, **values: Any) -> None:
        if not self.enabled:
            return
        with self.path.open("a") as f:
            f.write(json.dumps({"kind": kind, "iter": iter, **values}) + "\n")
        if self.writer is not None:
            for name, value in values.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    self.writer.add_scalar(f"{kind}/{name}", value, iter)
            self.writer.flush()

    def truncate_after(self, iteration: int) -> None:
        """Drop rows logged after ``iteration`` (a resumed run replays them)."""
        if not self.enabled or not self.path.is_file():
            return
        lines = self.path.read_text().splitlines()
        kept = [line for line in lines if line.strip() and _iter_of(line) <= iteration]
        if len(kept) != len(lines):
            self.path.write_text("".join(line + "\n" for line in kept))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
