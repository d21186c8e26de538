"""Measure what each official-compatible switch changes (docs/fidelity.md's "effect" column).

For each model and switch: the same random weights (non-trivial BN statistics, zero-initialised
parameters drawn), one random input, fp64; prints the largest logit difference between rtseg's
default and the switched network, relative to the largest logit, and the share of pixels whose
argmax label changes. Random weights measure the arithmetic, not a trained model's accuracy.

    python -m studies.fidelity.run [--size 256 512] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys

import torch

import rtseg
from studies.common import randomise_weights, run_study

CASES = [
    ("fanet18", {"up_padding": True}),
    ("fanet18", {"align_corners": True}),
    ("fanet18", {"up_padding": True, "align_corners": True}),
    ("fanet18", {"mean": False}),
    ("ifa_r50", {"align_corners": True}),
    ("gain_r18", {"dilate": False}),
]


def effect(name: str, options: dict, size: tuple[int, int], seed: int) -> tuple[float, float]:
    """(max |Δlogit| / max |logit|, % of labels changed) of ``options`` on model ``name``."""
    torch.manual_seed(seed)
    base = randomise_weights(rtseg.create_model(name, 19)).double()
    switched = rtseg.create_model(name, 19, **options).double().eval()
    switched.load_state_dict(base.state_dict())
    x = torch.randn(1, 3, *size, dtype=torch.float64)
    with torch.no_grad():
        a, b = base(x), switched(x)
    rel = float((a - b).abs().max() / a.abs().max())
    changed = float((a.argmax(1) != b.argmax(1)).double().mean() * 100)
    return rel, changed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs=2, default=[256, 512], metavar=("H", "W"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    print("| model | switch | max |Δlogit| / max |logit| | labels changed |")
    print("|---|---|---|---|")
    for name, options in CASES:
        rel, changed = effect(name, options, tuple(args.size), args.seed)
        opts = ", ".join(f"{k}={v}" for k, v in options.items())
        print(f"| {name} | {opts} | {rel:.3g} | {changed:.2f} % |")


if __name__ == "__main__":
    sys.exit(run_study(main))
