"""The peers study's queue, its committed record and its report, from the JSON alone.

* :data:`JOBS`: the 17 runs in queue order: the four peers with their own bilinear last step,
  the five seed networks, then the peers with ``upsampler=gum``, then with ``dysample``.
* :func:`merge_record`: ``docs/results/peers_camvid.json`` (read and written with
  studies.common's :func:`load_records`, :func:`save_records`) keeps one record per run name,
  in queue order; scores in per cent.
* :func:`report`: the markdown: the recipe, the command, one table of every run (those not
  finished: "not run yet"), and each peer's gum/dysample run against the same peer with
  bilinear (:func:`studies.stats.paired_cell`: with one seed, a difference and no interval).
* :func:`write_block`: that markdown between ``<!-- peers_camvid:begin -->`` and
  ``<!-- peers_camvid:end -->`` in ``docs/results.md`` (appended when absent).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from studies.common import DEFINITIONS, THIN, wrap, write_marked_block
from studies.stats import by_seed, paired_cell

PEERS = ("pidnet_s", "ddrnet23_slim", "bisenetv2", "stdc1_seg")
SEED_NETWORKS = ("gain_r18", "gain_df2", "fanet18", "gun", "ifa_r18")
VARIANTS = ("gum", "dysample")  # the peers' other logit upsamplers (model option upsampler=)
BEGIN, END = "<!-- peers_camvid:begin -->", "<!-- peers_camvid:end -->"
TITLE = "## The real-time peers and the seed networks on CamVid, from scratch (issue 32)"
COMMANDS = [
    "python -m studies.peers_camvid.run                   # the whole queue, resumable",
    "python -m studies.peers_camvid.run --stop-after 120  # or the next two hours of it",
    "python -m studies.peers_camvid.run --report-only     # this block from the JSON",
    "python -m studies.peers_camvid.run --time-step       # s/step of each network, the hours"]


class Job(NamedTuple):
    """One run: its name (run folder, JSON key, ``--models``), the network, and a peer's final
    class-map upsampler (None: a seed network, with its own decoder)."""

    name: str
    model: str
    upsampler: str | None


JOBS = ([Job(p, p, "bilinear") for p in PEERS] + [Job(s, s, None) for s in SEED_NETWORKS]
        + [Job(f"{p}+{u}", p, u) for u in VARIANTS for p in PEERS])
NAMES = [job.name for job in JOBS]


def _order(record: dict[str, Any]) -> tuple[int, str]:
    name = record["name"]
    return (NAMES.index(name) if name in NAMES else len(NAMES), name)


def merge_record(records: Iterable[dict[str, Any]], record: dict[str, Any]) -> list[dict]:
    """``records`` with ``record`` in its place (one per run name, the newer kept), in queue
    order (runs outside the queue last, by name)."""
    kept = {r["name"]: r for r in records}
    kept[record["name"]] = record
    return sorted(kept.values(), key=_order)


def _num(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _time(record: dict[str, Any]) -> str:
    hours, step = record.get("train_hours"), record.get("s_per_step")
    if hours is None:
        return "–"
    return f"{hours:.2f} h" + ("" if step is None else f" ({step:.2f} s/step)")


def _row(job: Job, record: dict[str, Any] | None) -> str:
    up = job.upsampler or "own"
    if record is None:
        return f"| {job.model} | {up} | – | – | not run yet | " + " | ".join(
            "–" for _ in range(len(THIN) + 3)) + " |"
    per_class = record.get("per_class_iou") or {}
    params = record.get("params")
    cells = [_num(None if params is None else params / 1e6, 2),
             _num(record.get("gmac_360x480")), _num(record.get("test_miou")),
             _num(record.get("bf2")), _num(record.get("biou")),
             *(_num(per_class.get(c)) for c in THIN), _time(record)]
    return f"| {job.model} | {up} | " + " | ".join(cells) + " |"


def _runs(record: dict[str, Any], key: str) -> list[dict[str, Any]]:
    """``paired_cell``'s runs of one record: ``[{seed, key: fraction}]``, none when missing."""
    value = record.get(key)
    if value is None:
        value = (record.get("per_class_iou") or {}).get(key)
    return [] if value is None else [{"seed": record.get("seed", 0), key: value / 100}]


def _difference(job: Job, have: dict[str, dict]) -> str:
    """The row of ``job`` (a peer with gum or dysample) minus the same peer with bilinear."""
    label = f"`{job.name}` − `{job.model}` (bilinear)"
    missing = [n for n in (job.name, job.model) if n not in have]
    if missing:
        return f"| {label} | not run yet ({', '.join(missing)}) |" + " |" * (2 + len(THIN))
    run, base = have[job.name], have[job.model]
    cells = []
    for key in ("test_miou", "bf2", "biou", *THIN):
        a, b = _runs(run, key), _runs(base, key)
        if not a or not b:
            cells.append("–")
        else:
            cells.append(paired_cell(a, b, key) if key not in THIN else by_seed(a, b, key))
    return f"| {label} | " + " | ".join(cells) + " |"


def _iters_note(records: Sequence[dict], iters: int) -> str:
    counts = sorted({r.get("iters") for r in records} - {None})
    if not counts or counts == [iters]:
        return f"{iters} iterations"
    return (f"{iters} iterations; mind that the recorded runs have "
            + ", ".join(map(str, counts)) + " iterations, and runs of different lengths are "
            "not like for like")


def report(records: Sequence[dict[str, Any]], iters: int = 5000) -> str:
    """The generated section: the recipe, the command, the table, the differences."""
    have = {r["name"]: r for r in records}
    done = [r for r in records if r["name"] in NAMES]
    hours = sum(r.get("train_hours") or 0 for r in done)
    lines = [TITLE, "", wrap(
        "*Generated by `python -m studies.peers_camvid.run --report-only` from "
        "`docs/results/peers_camvid.json`; edits inside this block are overwritten.*"), "",
        wrap("Every network from random weights on CamVid's 367 train frames with one recipe "
             "and budget, the probe's stage 1 ([Stage 1](#stage-1-a-working-camvid-model-on-"
             f"this-cpu)): {_iters_note(done, iters)} × batch 8 of random 240×320 crops of the "
             "480×360 frames (scale 0.5–2, flip, colour jitter), SGD lr 0.02 with 200 warm-up "
             "iterations and poly decay, weight decay 5e-4, OHEM 0.7 keeping at least 4800 "
             "pixels per crop, bf16 autocast, validation every 500 iterations, the best "
             "checkpoint on val; one seed (0) each. Each network keeps its own auxiliary heads "
             "with their loss kinds and weights (the model's `aux_kinds`, `aux_weights`) and the "
             "architecture options of its CamVid config (`gain_r18`: the official CamVid network, "
             "`dilate: false, context: false, fuse3x3: false`); nothing else of its own recipe. "
             "The peers' gum and dysample rows change only their last step, the class map up to "
             "the input size (`model_kwargs={upsampler: gum}`, rtseg/models/logit_upsampling.py); "
             "a seed network's upsampler is its own decoder (\"own\"). Test: the best-on-val "
             "checkpoint on the 233 whole 480×360 test frames (eval scale 1). Params and GMAC at "
             "360×480 as in docs/benchmarks.md (rtseg.complexity); training time is the time of "
             "the training steps (validation excluded) from each run's log on the 2-core CPU."),
        "", wrap(DEFINITIONS), "", "```bash", *COMMANDS, "```", "",
        wrap(f"{len(done)} of {len(JOBS)} runs done, {hours:.1f} h of training in all. Test "
             "scores in %; the thin classes' IoU."), "",
        "| model | upsampler | params (M) | GMAC | test mIoU | BF@2 | BIoU | "
        + " | ".join(THIN) + " | training time |", "|---|---|" + "---|" * (len(THIN) + 6)]
    lines += [_row(job, have.get(job.name)) for job in JOBS]
    lines += [_row(Job(r["name"], r["model"], r.get("upsampler")), r) for r in records
              if r["name"] not in NAMES]
    lines += ["", wrap(
        "Each peer with gum or dysample against the same peer with bilinear, in points: one "
        "run minus one run, both seed 0. One seed gives no interval, so by the rule of [How "
        "differences are judged](#how-differences-are-judged) none of these differences shows "
        "anything, either way, however large it is; a verdict needs paired seeds."), "",
        "| run − paired run | Δ mIoU | Δ BF@2 | Δ BIoU | " + " | ".join(f"Δ {c}" for c in THIN)
        + " |", "|---|" + "---|" * (3 + len(THIN))]
    lines += [_difference(job, have) for job in JOBS if job.upsampler in VARIANTS]
    return "\n".join(lines).rstrip() + "\n"


def write_block(path: Path, text: str) -> None:
    """Put ``text`` between the markers in ``path`` (the block appended when absent)."""
    write_marked_block(path, text, "peers_camvid")
