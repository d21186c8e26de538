"""``rtseg check-data``: read and check every sample of a data set before a long run."""

from __future__ import annotations

import argparse

from ..data import DATASETS


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("check-data", help="check every image/label pair of a data set",
                       description="Reads every pair of the given splits exactly as training "
                       "does and lists every problem at once. Exit status 0 when the data set "
                       "is clean, 1 when problems were found, 2 for a usage error.")
    p.add_argument("root", help="the data set folder (layout detected)")
    p.add_argument("--dataset", choices=[d for d, cls in DATASETS.items() if cls.needs_root],
                   help="the layout (default: detected)")
    p.add_argument("--splits", nargs="+", help="default: train, val and test where present")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..data.check import check_dataset

    report = check_dataset(args.root, args.dataset, args.splits)
    counts = ", ".join(f"{split} {n}" for split, n in report["splits"].items()) or "none"
    print(f"{report['dataset']} at {report['root']}: samples checked: {counts}")
    for problem in report["problems"]:
        print(f"  {problem}")
    n = len(report["problems"])
    print("no problems found" if n == 0 else f"{n} problem(s) found")
    return 0 if n == 0 else 1
