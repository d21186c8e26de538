"""Where each ``fpn_r18_<up>`` spends its time: the operator profile, reference against fast path.

For every model, one call at the given size is profiled with ``torch.profiler`` after two
warm-up calls, first with the upsamplers' plain formulas (:func:`rtseg.layers.reference_paths`)
and then with their inference fast paths. Printed as one markdown table per model: the
operators' self CPU time in ms, largest first. Profiles are single calls on a shared machine:
read them for where the time goes, and take latencies from ``rtseg bench --compare``.

    python -m tools.profile_upsamplers --size 512 1024 --threads 2
"""

from __future__ import annotations

import argparse
from contextlib import nullcontext

import torch
from torch.profiler import profile

import rtseg
from rtseg.layers import reference_paths

UPSAMPLERS = ["bilinear", "gai", "fast_attention", "ifa", "gum"]


def op_times(model: torch.nn.Module, x: torch.Tensor, reference: bool) -> dict[str, float]:
    """Self CPU ms per operator over one profiled call (after two warm-up calls)."""
    with torch.inference_mode(), reference_paths() if reference else nullcontext():
        for _ in range(2):
            model(x)
        with profile() as prof:
            model(x)
    return {e.key: e.self_cpu_time_total / 1e3 for e in prof.key_averages()}


def table(before: dict[str, float], after: dict[str, float], top: int) -> list[str]:
    """Markdown rows: the ``top`` operators by the larger of their two times, and the totals."""
    keys = sorted(set(before) | set(after), key=lambda k: -max(before.get(k, 0), after.get(k, 0)))
    lines = ["| operator | reference ms | fast path ms |", "|---|---|---|"]
    for k in keys[:top]:
        lines.append(f"| {k} | {before.get(k, 0):.1f} | {after.get(k, 0):.1f} |")
    lines.append(f"| **total** | {sum(before.values()):.1f} | {sum(after.values()):.1f} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", nargs=2, type=int, default=[512, 1024], metavar=("H", "W"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--top", type=int, default=8, help="operators per table")
    p.add_argument("--upsamplers", nargs="+", default=UPSAMPLERS, choices=UPSAMPLERS)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    x = torch.randn(1, 3, *args.size, generator=torch.Generator().manual_seed(0))
    for up in args.upsamplers:
        model = rtseg.create_model(f"fpn_r18_{up}", 19, aux=False).eval()
        before, after = op_times(model, x, True), op_times(model, x, False)
        print(f"\n### fpn_r18_{up}, {args.size[0]}×{args.size[1]}, {args.threads} threads\n")
        print("\n".join(table(before, after, args.top)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
