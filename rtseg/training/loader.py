"""The training data loader: per-sample seeds, quiet workers, and workers stopped on an error.

:class:`SeededSampler` gives every sample a seed that depends only on (seed, epoch, position).
:func:`loader_batches` iterates a DataLoader and, when the loop ends for any reason (a data
error raised in a worker, a NaN, a signal), stops and joins its worker processes at once:
otherwise they stay alive, holding the error's traceback, and the interpreter's exit waits on
them for ever (the workers ignore SIGTERM, see :func:`quiet_worker`).
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

from torch.utils.data import DataLoader, DistributedSampler, Sampler


class SeededSampler(Sampler):
    """Yields ``(index, sample_seed)`` for one epoch of a DistributedSampler, from ``start``.

    The seed of a sample depends only on (seed, epoch, position), so its augmentation is the
    same whether the epoch is run whole or resumed in the middle, in any worker process.
    """

    def __init__(self, base: DistributedSampler, seed: int, epoch: int, start: int = 0) -> None:
        self.base, self.seed, self.epoch, self.start = base, seed, epoch, start
        base.set_epoch(epoch)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for pos, index in enumerate(list(self.base)):
            if pos >= self.start:
                yield index, hash((self.seed, self.epoch, pos, self.base.rank)) & 0x7FFFFFFF

    def __len__(self) -> int:
        return max(len(self.base) - self.start, 0)


def quiet_worker(worker_id: int) -> None:
    """Loader workers leave SIGINT/SIGTERM to the main process, which stops the run cleanly
    (a Ctrl-C reaches the whole process group)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


@contextlib.contextmanager
def loader_batches(loader: DataLoader) -> Iterator[Iterator]:
    """The batches of ``loader``; on leaving the block its workers are stopped and joined
    (a worker that does not stop within a few seconds is killed)."""
    batches = iter(loader)
    try:
        yield batches
    finally:
        with contextlib.suppress(Exception):
            batches._shutdown_workers()  # PyTorch's own orderly stop: done event, join
        for worker in getattr(batches, "_workers", []):
            if worker.is_alive():
                worker.kill()
                worker.join(timeout=5)
