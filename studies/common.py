"""What every study shares: cached, resumable train-then-test, the interleaved CamVid latency,
figure grids of predictions, randomised weights, report blocks and run records (the
statistics of paired runs are :mod:`studies.stats`).

* :func:`train_then_test`: train a run (or resume it from its ``last.pt``), then score its
  ``best.pt`` on the test split once; the scores are cached as ``metrics_test.json`` in the run
  folder, so a finished run is never trained or scored again and a stopped one continues.
* :func:`camvid_latency`, :func:`saved_latency`: every model timed by ``rtseg bench`` in one
  interleaved run at CamVid's 360×480, or the timings an earlier report kept.
* :func:`prediction_rows`, :func:`save_grid`: figures of image / ground truth / predictions.
* :func:`randomise_weights`: non-trivial random weights for equivalence measurements.
* :func:`write_marked_block`: a generated report between ``<!-- name:begin -->`` and
  ``<!-- name:end -->`` in a markdown page, nothing outside the markers changed.
* The queued studies' parts: :func:`load_records`, :func:`save_records` (a committed JSON list
  of run records, written atomically), :func:`finite`, :func:`wrap`, :data:`DEFINITIONS` (the
  boundary scores' wording), :func:`train_seconds` (training time from a run's log),
  :class:`Budget` (``--stop-after`` and the SIGINT/SIGTERM handler), and the probe's stage-1
  recipe (:data:`STAGE1_CONFIG`, :func:`stage1_recipe`).
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import signal
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
CAMVID = ROOT.parent / "shared" / "data" / "camvid"  # the default --data of the CamVid studies
THIN = ["Pole", "SignSymbol", "Pedestrian", "Bicyclist"]  # CamVid's thin classes
METRICS = "metrics_test.json"
# The probe's stage 1 (docs/results.md, "Stage 1: a working CamVid model on this CPU"): this
# config overridden by stage1_recipe(): random 240×320 crops of the 480×360 frames, scale 0.5–2,
# flip, jitter, batch 8, SGD lr 0.02 with 200 warm-up iterations and poly decay, OHEM keeping at
# least crop/16 pixels per crop, bf16 autocast (2× faster on this CPU's AVX-512 BF16), best
# checkpoint on val.
STAGE1_CONFIG = ROOT / "configs" / "camvid" / "fpn_r18_bilinear.yaml"
STAGE1_RECIPE = {"lr": 0.02, "warmup_iters": 200, "amp": True, "log_interval": 20}
DEFINITIONS = (
    "BF@k is rtseg's pooled boundary F-score: boundary pixels are those with a 4-neighbour of "
    "another class, matched within a square (Chebyshev) tolerance of k pixels, counts pooled "
    "over the test set per class, then averaged over classes. BIoU is Boundary IoU (Cheng et "
    "al. 2021): per class, the IoU of the bands within d = 2 % of the image diagonal (12 px at "
    "480×360) inside the true and the predicted masks, image borders counting as contours, "
    "pooled over the test set, averaged over classes (docs/evaluation.md).")

Grid = list[list[tuple[str, torch.Tensor]]]  # rows of (title, H×W×3 uint8 picture)


def train_then_test(run: Path, train: Callable[[Path | None], Any], *, data: str,
                    device: str = "auto", report_only: bool = False,
                    **evaluate: Any) -> dict[str, Any] | None:
    """The test metrics of run folder ``run``: cached, or trained (resumed) and scored now.

    ``train(resume)`` trains the run into ``run``; ``resume`` is ``run`` when it holds a
    ``last.pt`` (continue exactly where it stopped), else None (start). Then ``best.pt`` is
    scored by :func:`rtseg.evaluate` on ``data``'s test split with ``evaluate``'s options, and
    the scores are written to ``run/metrics_test.json``: the run is done, and later calls read
    that file. With ``report_only`` nothing is trained: an unfinished run gives None.
    """
    import rtseg

    metrics = run / METRICS
    if metrics.is_file():
        return json.loads(metrics.read_text())
    if report_only:
        return None
    train(run if (run / "last.pt").is_file() else None)
    res = rtseg.evaluate(run / "best.pt", data=data, split="test", device=device, **evaluate)
    metrics.write_text(json.dumps(res, indent=2))
    return res


def camvid_latency(models: Sequence[str], device: str, iters: int) -> dict[str, dict[str, Any]]:
    """Median latency of every model at 360×480, batch 1, 11 classes, one interleaved run."""
    from rtseg.bench import benchmark

    rows = benchmark(list(models), size=(360, 480), batch=1, device=device, num_classes=11,
                     iters=iters, compare=True, reference=False)
    return {r["name"]: r for r in rows}


def saved_latency(out: Path, models: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    """The timings an earlier call wrote to ``out/results.json`` (for ``models``); {} if none.

    CPU latency drifts with the machine's load, so a report that trains nothing keeps the
    timings taken in the study run rather than quietly replacing them with new ones.
    """
    try:
        saved = json.loads((out / "results.json").read_text()).get("latency") or {}
    except (OSError, ValueError, AttributeError):
        return {}
    names = list(saved) if models is None else models
    return {m: saved[m] for m in names if isinstance(saved.get(m), dict)}


def load_runs(runs: Mapping[str, Path], device: str, **options: Any) -> dict[str, Any]:
    """Segmenters (:func:`rtseg.load`) of the runs whose ``best.pt`` exists, by title."""
    import rtseg

    return {title: rtseg.load(run / "best.pt", device=device, **options)
            for title, run in runs.items() if (run / "best.pt").is_file()}


def palette_of(ds: Any) -> torch.Tensor:
    """256×3 uint8 colours of a data set's classes (black beyond them: the ignore label)."""
    return torch.tensor(ds.palette + [(0, 0, 0)] * (256 - len(ds.palette)), dtype=torch.uint8)


def prediction_rows(ds: Any, frames: Iterable[int], segs: Mapping[str, Callable]) -> Grid:
    """One figure row per frame index of ``ds`` (those past its end are left out): the image,
    the ground truth, then each segmenter's prediction, titled by its key."""
    palette = palette_of(ds)
    rows = []
    for index in [i for i in frames if i < len(ds)]:
        image, label = ds.load(index)
        rows.append([("image", image.permute(1, 2, 0)), ("ground truth", palette[label])]
                    + [(name, palette[seg(image)]) for name, seg in segs.items()])
    return rows


def save_grid(rows: Grid, path: Path, cell: tuple[float, float] = (2.4, 1.9),
              dpi: int = 110) -> None:
    """A figure of H×W×3 uint8 pictures, one row per list of (title, picture)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = max(len(r) for r in rows)
    fig, axes = plt.subplots(len(rows), cols, figsize=(cell[0] * cols, cell[1] * len(rows)),
                             squeeze=False)
    for r, panels in enumerate(rows):
        for c, (title, picture) in enumerate(panels):
            axes[r, c].imshow(picture.numpy(), interpolation="nearest")
            axes[r, c].set_axis_off()
            axes[r, c].set_title(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


def randomise_weights(model: nn.Module) -> nn.Module:
    """Non-zero values for zero-initialised parameters (GAI's γ, GUM's offset head) and
    non-trivial BN statistics and affine terms, so that attention, offsets and BN all change
    the output; in place, from torch's global generator; returns the model in eval mode."""
    with torch.no_grad():
        for p in model.parameters():
            if p.abs().sum() == 0:
                p.normal_(0, 0.2)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.2)
    return model.eval()


def run_study(main: Callable[[], int | None]) -> int:
    """Run a study's ``main`` as a command: a stop by signal (``last.pt`` written) or a user's
    mistake (:class:`rtseg.errors.RtsegError`) is one line on stderr, not a traceback; the exit
    status is 128 + the signal, or 2."""
    from rtseg.errors import RtsegError, RunInterrupted, one_line

    name = Path(sys.argv[0]).parent.name or "study"
    try:
        return main() or 0
    except RunInterrupted as e:
        print(f"{name}: {e}", file=sys.stderr)
        return 128 + e.signum
    except RtsegError as e:
        print(f"{name}: error: {one_line(str(e))}", file=sys.stderr)
        return 2


def write_marked_block(path: Path, text: str, name: str) -> None:
    """Put ``text`` between ``<!-- name:begin -->`` and ``<!-- name:end -->`` in ``path`` (the
    block appended when absent; the page created when missing); nothing outside the markers
    changes, and the page is replaced atomically."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    old = path.read_text() if path.is_file() else ""
    block = f"{begin}\n{text.rstrip()}\n{end}"
    start, stop = old.find(begin), old.find(end)
    if start >= 0 and stop > start:
        new = old[:start] + block + old[stop + len(end):]
    else:
        new = old + ("\n" if old and not old.endswith("\n") else "") + (
            "\n" if old else "") + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(new)
    os.replace(tmp, path)


def stage1_recipe(crop: Sequence[int] = (240, 320), batch: int = 8,
                  workers: int = 1) -> dict[str, Any]:
    """The probe's stage-1 overrides of :data:`STAGE1_CONFIG` (OHEM keeps crop/16 pixels)."""
    h, w = crop
    return {**STAGE1_RECIPE, "crop_size": [h, w], "batch_size": batch, "workers": workers,
            "ohem_min_kept": h * w // 16}


def load_records(path: Path) -> list[dict[str, Any]]:
    """The committed records (none when the file does not exist yet)."""
    return json.loads(path.read_text()) if path.is_file() else []


def save_records(path: Path, records: list[dict[str, Any]]) -> None:
    """Write the records atomically (a stop mid-write leaves the old file whole)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(records, indent=1, allow_nan=False) + "\n")
    os.replace(tmp, path)


def finite(value: float | None) -> float | None:
    """A score in per cent rounded to 0.01, None for NaN (a class absent from the test set)."""
    return None if value is None or not math.isfinite(value) else round(100 * value, 2)


def wrap(text: str) -> str:
    """A paragraph broken at 99 columns, like the rest of docs/results.md."""
    return textwrap.fill(text, 99, break_long_words=False, break_on_hyphens=False)


def train_seconds(log: Path, batch: int) -> float:
    """Seconds spent in training steps (validation excluded), from the logged throughput."""
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    total, last = 0.0, 0
    for row in rows:
        if row.get("kind") == "train":
            total += (row["iter"] - last) * batch / row["img_per_s"]
            last = row["iter"]
    return total


class Budget:
    """``--stop-after``: a deadline with an alarm at it, and the study's SIGINT/SIGTERM handler.

    The alarm during training (:meth:`train`) sends this process SIGTERM: the trainer's handler
    stops after the current step with ``last.pt`` written (``RunInterrupted``). Outside training
    it only marks the budget spent: a test evaluation under way finishes and is recorded.
    SIGINT/SIGTERM outside the trainer end the study with ``RunInterrupted`` (one line, via
    :func:`run_study`).
    """

    def __init__(self, minutes: float | None) -> None:
        self.deadline = None if minutes is None else time.monotonic() + 60 * minutes
        self.spent, self.training = False, False

    def left(self) -> float:
        """Seconds left (inf without a deadline)."""
        return math.inf if self.deadline is None else self.deadline - time.monotonic()

    @contextlib.contextmanager
    def armed(self):
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        names = (signal.SIGALRM, signal.SIGINT, signal.SIGTERM)
        saved = {s: signal.getsignal(s) for s in names}
        signal.signal(signal.SIGINT, self._stop)
        signal.signal(signal.SIGTERM, self._stop)
        if self.deadline is not None and self.left() > 0:
            signal.signal(signal.SIGALRM, self._alarm)
            signal.setitimer(signal.ITIMER_REAL, self.left())
        try:
            yield self
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            for s, h in saved.items():
                signal.signal(s, h)

    def train(self, cfg: Any, resume: Path | None) -> None:
        """Train (or resume) the run of ``cfg``; the alarm stops it while it trains."""
        import rtseg

        self.training = True
        try:
            rtseg.train(cfg, resume=resume)
        finally:
            self.training = False

    def run(self, run: Path, cfg: Any, name: str, need: float, *, device: str,
            tolerance: Sequence[int]) -> dict[str, Any] | str:
        """Train and test the queued run in folder ``run`` (:func:`train_then_test`), or say
        why the queue stops before or during it: the budget is spent (a run already scored
        here is still recorded), or ``need`` minutes (its estimate) do not fit in what is left
        (a begun run is resumed anyway). Returns the test scores or the reason."""
        from rtseg.errors import RunInterrupted

        begun = (run / "last.pt").is_file()
        scored = (run / METRICS).is_file()  # finished here, not yet recorded: no time
        if not scored and (self.spent or self.left() <= 0):
            return "budget spent"
        if not (begun or scored) and 60 * need > self.left():
            return (f"next run ({name}, about {need:.0f} min) does not fit in the "
                    f"{self.left() / 60:.0f} min left")
        try:
            return train_then_test(run, functools.partial(self.train, cfg), data=cfg.data_root,
                                   device=device, scales=(cfg.val_scale,), tolerance=tolerance)
        except RunInterrupted:
            if not self.spent:
                raise
            return f"budget spent ({name} stopped with its last.pt)"

    def _alarm(self, signum, frame) -> None:
        self.spent = True
        if self.training:
            os.kill(os.getpid(), signal.SIGTERM)

    def _stop(self, signum, frame) -> None:
        from rtseg.errors import RunInterrupted

        raise RunInterrupted(f"stopped by {signal.Signals(signum).name} outside a training "
                             "step; finished runs are in the JSON: re-run the same command to "
                             "continue", signum)


def add_queue_options(p: Any, out: str) -> None:
    """The options every queued CamVid study takes (``p`` an ``argparse.ArgumentParser``):
    ``--stop-after``, ``--set``, ``--data``, ``--out`` (default ``out``), ``--docs``,
    ``--device``, ``--report-only``."""
    p.add_argument("--stop-after", type=float, default=None, metavar="MINUTES")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="config overrides for every run (e.g. iters=2 for a smoke run)")
    p.add_argument("--data", default=str(CAMVID))
    p.add_argument("--out", default=out)
    p.add_argument("--docs", default=str(ROOT / "docs"))
    p.add_argument("--device", default="auto")
    p.add_argument("--report-only", action="store_true", help="train nothing; report the JSON")

