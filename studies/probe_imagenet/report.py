"""The ImageNet probe's committed record and its report, from the JSON alone.

* :func:`merge_record` (and studies.common's :func:`load_records`, :func:`save_records`):
  ``docs/results/probe_imagenet.json``, a sorted list with one record per (upsampler,
  protocol, seed); scores in per cent.
* :func:`report`: the markdown of the records: per protocol, the scores with their seed spread,
  the paired differences to bilinear (mean same-seed difference, 95 % Student-t interval, word)
  and the thin classes seed by seed.
* :func:`write_block`: that markdown between ``<!-- probe_imagenet:begin -->`` and
  ``<!-- probe_imagenet:end -->`` in ``docs/results.md`` (appended when absent); nothing
  outside the markers changes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from studies.common import DEFINITIONS, THIN, wrap, write_marked_block
from studies.common import load_records as load_records  # re-exported: the study's record I/O
from studies.common import save_records as save_records
from studies.stats import by_seed, paired_cell, paired_difference, spread

PROTOCOLS = {"frozen": "Protocol A: frozen ImageNet backbone, only the head trained",
             "finetune": "Protocol B: end to end from ImageNet"}
# every upsampler of rtseg.upsample but gai_nonlocal, bilinear (the baseline) first
UPSAMPLERS = ["bilinear", "gai", "fast_attention", "gum", "ifa", "dysample", "carafe", "fade",
              "sapa"]
BEGIN, END = "<!-- probe_imagenet:begin -->", "<!-- probe_imagenet:end -->"
TITLE = "## ImageNet backbone: every upsampler (issue 31)"
FIRST = [("Δ mIoU (95 % CI)", "test_miou", "paired"), ("mIoU by seed", "test_miou", "by_seed"),
         ("Δ BF@2 (95 % CI)", "bf2", "paired"), ("Δ BIoU (95 % CI)", "biou", "paired")]
SECOND = [("Δ BF@1 (95 % CI)", "bf1", "paired"), ("Δ BF@3 (95 % CI)", "bf3", "paired"),
          ("BF@2 by seed", "bf2", "by_seed"), ("BIoU by seed", "biou", "by_seed")]
SCORES = [("test mIoU", "test_miou"), ("BF@1", "bf1"), ("BF@2", "bf2"), ("BF@3", "bf3"),
          ("BIoU", "biou")]

Key = tuple[str, str, int]  # (upsampler, protocol, seed)


def key_of(record: dict[str, Any]) -> Key:
    return record["upsampler"], record["protocol"], int(record["seed"])


def _sort_key(record: dict[str, Any]) -> tuple:
    up, protocol, seed = key_of(record)
    return (list(PROTOCOLS).index(protocol) if protocol in PROTOCOLS else len(PROTOCOLS),
            UPSAMPLERS.index(up) if up in UPSAMPLERS else len(UPSAMPLERS), up, seed)


def merge_record(records: Iterable[dict[str, Any]], record: dict[str, Any]) -> list[dict]:
    """``records`` with ``record`` in its place: one per key (a new one replaces an old one with
    the same upsampler, protocol and seed), sorted by protocol, upsampler and seed."""
    kept = {key_of(r): r for r in records}
    kept[key_of(record)] = record
    return sorted(kept.values(), key=_sort_key)


def _runs(records: Sequence[dict], protocol: str, up: str, key: str | None = None) -> list:
    """``paired_cell``'s runs: ``{seed, test_miou, …}`` as fractions, in seed order; with
    ``key`` (a class name), that class's IoU as ``test_miou``; runs missing it are left out."""
    out = []
    for r in sorted(records, key=_sort_key):
        if r["protocol"] != protocol or r["upsampler"] != up:
            continue
        values = {k: r.get(k) for _, k in SCORES}
        if key is not None:
            values = {"test_miou": (r.get("per_class_iou") or {}).get(key)}
        out.append({"seed": r["seed"], **{k: None if v is None else v / 100
                                          for k, v in values.items()}})
    return out


def _complete(runs: list[dict], key: str) -> list[dict]:
    return [r for r in runs if r.get(key) is not None]


def paired_best(records: Sequence[dict], candidates: Sequence[str], n: int) -> list[str]:
    """The ``n`` candidates with the highest mean same-seed test-mIoU difference to bilinear
    under protocol A (ties: the order of ``candidates``)."""
    base = {r["seed"]: r["test_miou"] for r in _runs(records, "frozen", "bilinear")}
    means = {}
    for up in candidates:
        runs = [r for r in _runs(records, "frozen", up) if r["seed"] in base]
        if runs:
            means[up] = paired_difference([r["test_miou"] for r in runs],
                                          [base[r["seed"]] for r in runs]).mean
    return sorted(means, key=lambda u: (-means[u], list(candidates).index(u)))[:n]


def _cell(runs: list[dict], base: list[dict], key: str) -> str:
    runs, base = _complete(runs, key), _complete(base, key)
    return paired_cell(runs, base, key)


def _iters_note(records: Sequence[dict]) -> str:
    counts: dict[int, int] = {}
    for r in records:
        counts[r["iters"]] = counts.get(r["iters"], 0) + 1
    if len(counts) == 1:
        return f"{next(iter(counts))} iterations"
    return ("mixed iteration counts (" + ", ".join(f"{n} runs at {i}" for i, n in sorted(
        counts.items())) + "): pairs across them are not like for like")


def protocol_section(records: Sequence[dict], protocol: str) -> list[str]:
    """The markdown of one protocol: scores, paired differences, thin classes by seed."""
    mine = [r for r in records if r["protocol"] == protocol]
    ups = sorted({r["upsampler"] for r in mine}, key=lambda u: (
        UPSAMPLERS.index(u) if u in UPSAMPLERS else len(UPSAMPLERS), u))
    hours = sum(r.get("train_hours") or 0 for r in mine)
    lines = [f"### {PROTOCOLS[protocol]}", ""]
    if not mine:
        return lines + ["No run has finished yet.", ""]
    lines += [wrap(f"{len(mine)} run{'s' * (len(mine) > 1)}, {_iters_note(mine)} each, "
                   f"{hours:.1f} h of training in all. Scores on the test set in %: mean "
                   "(min–max over seeds)."), "",
              "| upsampler | seeds | " + " | ".join(h for h, _ in SCORES) + " |",
              "|---|---|" + "---|" * len(SCORES)]
    for up in ups:
        runs = _runs(mine, protocol, up)
        cells = [spread([r[k] for r in _complete(runs, k)]) if _complete(runs, k) else "–"
                 for _, k in SCORES]
        seeds = ", ".join(str(r["seed"]) for r in runs)
        lines.append(f"| {up} | {len(runs)} ({seeds}) | " + " | ".join(cells) + " |")
    base = _runs(mine, protocol, "bilinear")
    others = [u for u in ups if u != "bilinear"]
    lines.append("")
    if not base:
        return lines + ["No bilinear run has finished under this protocol: no differences yet.",
                        ""]
    if not others:
        return lines + ["Only bilinear has finished under this protocol: no differences yet.",
                        ""]
    lines += [wrap("Difference to bilinear, in points, over the seeds both have: the mean "
                   "same-seed difference with its 95 % Student-t interval; ahead or behind "
                   "when the interval excludes 0, not shown otherwise (one paired seed gives "
                   "no interval)."), ""]
    for columns in (FIRST, SECOND):
        lines += ["| upsampler | " + " | ".join(h for h, _, _ in columns) + " |",
                  "|---|" + "---|" * len(columns)]
        for up in others:
            runs = _runs(mine, protocol, up)
            lines.append(f"| {up} | " + " | ".join(
                _cell(runs, base, k) if kind == "paired"
                else by_seed(_complete(runs, k), _complete(base, k), k)
                for _, k, kind in columns) + " |")
        lines.append("")
    lines += thin_tables(mine, protocol, ups, base)
    return lines


def thin_tables(mine: Sequence[dict], protocol: str, ups: Sequence[str],
                base: list[dict]) -> list[str]:
    """A collapsible block: the thin classes' test IoU seed by seed, and the same-seed
    differences to bilinear."""
    def row(up: str, cell) -> str:
        return f"| {up} | " + " | ".join(cell(up, c) or "–" for c in THIN) + " |"

    def values(up: str, c: str) -> str:
        return ", ".join(f"s{r['seed']} {100 * r['test_miou']:.1f}"
                         for r in _complete(_runs(mine, protocol, up, c), "test_miou"))

    def diffs(up: str, c: str) -> str:
        return by_seed(*(_complete(_runs(mine, protocol, u, c), "test_miou")
                         for u in (up, "bilinear")), "test_miou")

    head = ["| upsampler | " + " | ".join(THIN) + " |", "|---|" + "---|" * len(THIN)]
    lines = ["<details><summary>Thin classes seed by seed (test IoU, %)</summary>", "",
             *head, *(row(up, values) for up in ups), "",
             "Difference to bilinear seed by seed, in points:", "", *head,
             *(row(up, diffs) for up in ups if up != "bilinear"), "", "</details>", ""]
    return lines


def report(records: Sequence[dict], pending: str = "") -> str:
    """The generated section: heading, what the protocols are, the definitions, the tables."""
    lines = [TITLE, "", wrap(
             "*Generated by `python -m studies.probe_imagenet.run --report-only` from "
             "`docs/results/probe_imagenet.json`; edits inside this block are overwritten.*"), "",
             wrap("`fpn_lite0_<up>` on CamVid from EfficientNet-Lite0's ImageNet weights, every "
             "upsampler with the same seeds (a seed fixes the head's initial weights, the data "
             "order and the augmentation, so differences are taken seed by seed). Protocol A "
             "freezes the backbone at its ImageNet weights, BN statistics included "
             "(`freeze=backbone`), and trains only the FPN head; protocol B trains the whole "
             "network with the recipe of `configs/camvid/fpn_lite0_<up>.yaml`, for bilinear, "
             "gai, gum and the two upsamplers with the best mean paired mIoU difference under "
             "protocol A. Test: the best-on-val checkpoint on the 233 test frames, seen at "
             "960×720 (eval scale 2) and scored at 480×360."), "", wrap(DEFINITIONS), ""]
    if pending:
        lines += [wrap(pending), ""]
    for protocol in PROTOCOLS:
        lines += protocol_section(records, protocol)
    return "\n".join(lines).rstrip() + "\n"


def write_block(path: Path, text: str) -> None:
    """Put ``text`` between the markers in ``path`` (the block appended when absent)."""
    write_marked_block(path, text, "probe_imagenet")
