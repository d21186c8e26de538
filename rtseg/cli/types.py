"""Argument types of the command line: each checks one value while argparse reads it, so a bad
value is refused in one line (``rtseg <command>: error: argument --x: ...``, exit status 2)
before a model is built or a file is read."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from pathlib import Path


def _number(text: str, kind: type, low: float, inclusive: bool, what: str) -> int | float:
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or (kind is float and not math.isfinite(value)) \
            or value < low or (value == low and not inclusive):
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1 (sizes, batches, thread and iteration counts, strides)."""
    return _number(text, int, 1, True, "a positive integer")


def non_negative_int(text: str) -> int:
    """An integer >= 0 (warm-up calls, tolerances)."""
    return _number(text, int, 0, True, "an integer >= 0")


def positive_float(text: str) -> float:
    """A finite number > 0 (scales)."""
    return _number(text, float, 0, False, "a finite number > 0")


def non_negative_float(text: str) -> float:
    """A finite number >= 0 (tolerances)."""
    return _number(text, float, 0, True, "a finite number >= 0")


def int_between(low: int, high: int) -> Callable[[str], int]:
    """An integer in [low, high]."""
    what = f"an integer from {low} to {high}"

    def check(text: str) -> int:
        value = _number(text, int, low, True, what)
        if value > high:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
        return value
    return check


def existing_path(text: str) -> str:
    """A file or folder that exists (an input)."""
    if not Path(text).exists():
        raise argparse.ArgumentTypeError(f"{text}: no such file or folder")
    return text


def name_list(choices: Sequence[str]) -> Callable[[str], list[str]]:
    """A comma-separated list of names, each one of ``choices``."""
    def check(text: str) -> list[str]:
        names = [n.strip() for n in text.split(",") if n.strip()]
        bad = [n for n in names if n not in choices]
        if not names or bad:
            raise argparse.ArgumentTypeError(
                f"unknown name(s) {', '.join(repr(b) for b in bad) or repr(text)}; use one or "
                f"more of {', '.join(choices)}, separated by commas")
        return names
    return check
