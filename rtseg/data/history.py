"""A drive's first frames: which earlier frames stand in for the past that does not exist yet.

One definition for the clip data sets (:mod:`rtseg.data.clips`) and for streaming
(``FANetTemp.step``), so that ``rtseg eval`` on clips and video ``predict`` compute the same
logits on every frame of a drive, its first ones included (rtseg's choice; the paper's temporal
module was never released).
"""

from __future__ import annotations


def context_positions(k: int, past: int) -> list[int]:
    """Positions (within the drive, 0 = its first frame) of the ``past`` context frames of the
    drive's frame ``k``, oldest first: ``k − past … k − 1``, with positions before the drive's
    start replaced by its first frame (so frame 1 with ``past=2`` has context ``[0, 0]``, and the
    clip ``(f0, f0, f1)``)."""
    if k < 0 or past < 0:
        raise ValueError(f"k and past must be >= 0, got k={k}, past={past}")
    return [max(k - j, 0) for j in range(past, 0, -1)]
