"""The README's model size table is `rtseg info --markdown`'s output, and its headline is the
committed CamVid record: a drift fails here."""

from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path

import rtseg
from rtseg.cli import main
from rtseg.cli.info import LICENCES, NO_WEIGHTS, licence

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
LICENCE = "licence: official code; weights"


def _table(text: str, first_header: str) -> tuple[list[str], dict[str, list[str]]]:
    """(header, rows by model) of the Markdown table whose header starts with ``first_header``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(first_header))
    head = [c.strip() for c in lines[start].strip("|").split("|")]
    rows = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = cells
    return head, rows


def _number(cell: str) -> float:
    return float(re.match(r"[0-9.]+", cell)[0])  # "303.9 (350.0†)" → 303.9


def test_readme_size_table_equals_rtseg_info(capsys):
    assert main(["info", "--markdown"]) == 0
    head, printed = _table(capsys.readouterr().out, "| model | params (M)")
    readme_head, written = _table(README.read_text(), "| model | params (M)")
    assert set(written) == set(printed) == set(rtseg.list_models())
    assert head[-1] == LICENCE and set(head) <= set(readme_head)
    for model, cells in printed.items():
        ours = written[model]
        for name, want in zip(head[1:], cells[1:], strict=True):
            got = ours[readme_head.index(name)]
            if name == LICENCE:
                assert got == want, f"README.md: {model}'s licence {got!r}, rtseg info {want!r}"
            else:
                assert _number(got) == float(want), (
                    f"README.md: {model} column {name!r} says {got}, rtseg info prints {want}")


def test_every_model_has_one_licence_entry():
    for model in rtseg.list_models():
        matches = [k for k in LICENCES if fnmatch.fnmatchcase(model, k)]
        assert len(matches) == 1, f"{model}: licence patterns {matches}"
        official, weights = licence(model).split("; ")
        assert official and (weights.endswith(("not stated", "Apache-2.0"))
                             or weights == NO_WEIGHTS), licence(model)
    assert licence("no_such_model") == "not stated"


def test_readme_headline_equals_the_committed_camvid_record():
    record = json.loads((ROOT / "docs/results/camvid_imagenet.json").read_text())
    headline = README.read_text().split("## Headline", 1)[1].split("\n## ", 1)[0]
    headline = " ".join(headline.split())
    assert f"**{record['test_miou']:.1f} % test mIoU**" in headline
    assert f"boundary F {record['bf2']:.1f} % at 2 px" in headline
    iou = record["per_class_iou"]
    thin = ", ".join(f"{name} {iou[name]:.1f}" for name in ("Pole", "SignSymbol", "Pedestrian"))
    assert f"{thin}, Bicyclist {iou['Bicyclist']:.1f} IoU" in headline
    scratch = record["same_budget_from_random_weights"]
    assert scratch["backbone_init"] == "scratch" and scratch["iters"] == record["iters"]
    assert scratch["amp"] == record["amp"]
    assert (f"budget from random weights: {scratch['test_miou']:.1f} % test mIoU, boundary F "
            f"{scratch['bf2']:.1f} %, Pole {scratch['per_class_iou']['Pole']:.1f}") in headline


def test_readme_speed_headline_equals_the_committed_speed_table():
    sizes = json.loads((ROOT / "docs/results/speed_table.json").read_text())
    record = next(s for s in sizes if s["size"] == "512x1024")
    ms = {r["model"]: r["median_ms"] for r in record["rows"] if r["variant"] == "ort_fp32"}
    headline = README.read_text().split("## Headline", 1)[1].split("\n## ", 1)[0]
    headline = " ".join(headline.split())

    def span(models: list[str]) -> str:
        lo, hi = min(models, key=ms.__getitem__), max(models, key=ms.__getitem__)
        return f"{ms[lo]:.1f} ms (`{lo}`) to {ms[hi]:.1f} ms (`{hi}`)"

    seeds = ["gain_r18", "gain_df2", "fanet18", "gun", "ifa_r18"]
    peers = ["pidnet_s", "ddrnet23_slim", "bisenetv2", "stdc1_seg"]
    assert record["settings"]["threads"] == 2 and record["settings"]["batch"] == 1
    assert f"the seeds' networks take {span(seeds)}, the peers {span(peers)}" in headline
    assert f"`fpn_lite0_gum` {ms['fpn_lite0_gum']:.1f} ms" in headline
