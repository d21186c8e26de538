"""The README's model size table is `rtseg info --markdown`'s output: a drift fails here."""

from __future__ import annotations

import re
from pathlib import Path

import rtseg
from rtseg.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"


def _rows(text: str, first_header: str) -> dict[str, list[str]]:
    """Rows of the Markdown table whose header starts with ``| model | params``, by model."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(first_header))
    rows = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = cells[1:]
    return rows


def _number(cell: str) -> float:
    return float(re.match(r"[0-9.]+", cell)[0])  # "303.9 (350.0†)" → 303.9


def test_readme_size_table_equals_rtseg_info(capsys):
    assert main(["info", "--markdown"]) == 0
    printed = _rows(capsys.readouterr().out, "| model | params (M)")
    written = _rows(README.read_text(), "| model | params (M)")
    assert set(written) == set(printed) == set(rtseg.list_models())
    for model, cells in printed.items():
        ours = written[model]
        for column, (want, got) in enumerate(zip(cells, ours[:3], strict=True)):
            assert _number(got) == float(want), (
                f"README.md: {model} column {column + 2} says {got}, rtseg info prints {want}")
