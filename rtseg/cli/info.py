"""``rtseg info``: parameters and GMAC of every model."""

from __future__ import annotations

import argparse

from ..registry import create_model, list_models
from ..utils import format_table
from .types import positive_int


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="parameters and GMAC of every model")
    p.add_argument("--size", nargs=2, type=positive_int, action="append", metavar=("H", "W"),
                   help="input size (repeatable; default 1024 2048 and 360 480)")
    p.add_argument("--num-classes", type=positive_int, default=19)
    p.add_argument("--models", nargs="+", choices=list_models(), metavar="MODEL")
    p.add_argument("--markdown", action="store_true", help="print a Markdown table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..complexity import count_macs, count_params

    sizes = [tuple(s) for s in (args.size or [[1024, 2048], [360, 480]])]
    head = ["model", "params (M)"] + [f"GMAC @{h}×{w}" for h, w in sizes]
    rows = []
    for name in args.models or list_models():
        model = create_model(name, args.num_classes, aux=False)
        rows.append([name, f"{count_params(model) / 1e6:.2f}"]
                    + [f"{count_macs(model, s) / 1e9:.1f}" for s in sizes])
    print(f"{args.num_classes} classes, inference graph (no auxiliary heads), batch 1; MACs count "
          "conv/matmul/attention products (torch.utils.flop_counter), not resize/softmax/BN.")
    print(format_table(head, rows, markdown=args.markdown))
    return 0
