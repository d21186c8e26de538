"""``python -m studies.peers_camvid.run --time-step``: seconds of a training step of each run's
network at the recipe's batch and crop under bf16 autocast (interleaved, after a warm-up step),
saved to ``OUT/step_seconds.json`` for ``--stop-after``'s estimates, and the queue's hours."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

import rtseg
from rtseg.bench import time_interleaved
from studies.peers_camvid.report import Job
from studies.peers_camvid.run import EVAL_MINUTES, STEP_FILE, model_kwargs
from tools.time_train_step import step_fn


def _bf16(step: Callable[[], None]) -> Callable[[], None]:
    def run() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            step()
    return run


def time_step(jobs: Sequence[Job], args: argparse.Namespace, size: tuple[int, int] = (240, 320),
              batch: int = 8, steps: int = 2) -> dict[str, float]:
    """Median seconds of one SGD step (forward, main and auxiliary losses, backward, update:
    ``tools.time_train_step.step_fn``, cross-entropy in place of OHEM) of each job's network on
    a random batch, 11 classes; saved, printed and projected over ``args.iters`` a run."""
    x = torch.randn(batch, 3, *size)
    y = torch.randint(0, 11, (batch, *size))
    fns = {job.name: _bf16(step_fn(rtseg.create_model(job.model, 11, **model_kwargs(job))
                                   .train(), x, y)) for job in jobs}
    stats = time_interleaved(fns, warmup=1, iters=steps)
    out = {name: round(r["median_ms"] / 1e3, 3) for name, r in stats.items()}
    path = Path(args.out) / STEP_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    saved = json.loads(path.read_text()) if path.is_file() else {}
    path.write_text(json.dumps({**saved, **out}, indent=1) + "\n")
    for name, s in out.items():
        print(f"{name}: {s:.2f} s/step, {args.iters * s / 3600:.1f} h for {args.iters} iterations")
    hours = sum(args.iters * s / 60 + EVAL_MINUTES for s in out.values()) / 60
    print(f"batch {batch}, {size[0]}×{size[1]}, bf16, {torch.get_num_threads()} threads, median "
          f"of {steps}; with {EVAL_MINUTES:.0f} min a run outside the steps: {hours:.1f} h for "
          f"{len(out)} runs. Saved to {path}")
    return out
