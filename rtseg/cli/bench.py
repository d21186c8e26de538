"""``rtseg bench``: the command-line face of :mod:`rtseg.bench` (arguments, report, JSON file)."""

from __future__ import annotations

import argparse
import json
import sys

from .. import bench as library
from ..bench import MODULES, BenchSettings, format_report, run_benchmark
from ..deploy.runtimes import BACKENDS
from ..outputs import atomic_path, check_output
from ..registry import list_models
from ..utils import PRECISIONS
from .types import name_list, positive_int


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``bench`` subcommand, run by :func:`run`."""
    p = subparsers.add_parser("bench", help="inference speed: latency, FPS, GFLOP/s, memory",
                              description=library.__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="*", metavar="MODEL",
                   help=f"models to time, or 'all' ({', '.join(list_models())})")
    p.add_argument("--module", nargs="+", metavar="NAME", dest="modules", default=[],
                   help="time upsampler/attention modules instead of models: "
                        f"{', '.join(MODULES)}, or 'all'")
    p.add_argument("--channels", type=positive_int, default=128, help="C of the --module inputs")
    p.add_argument("--size", nargs=2, type=positive_int, metavar=("H", "W"),
                   help="input size (default 1024 2048), or the --module feature size "
                        "(default 128 256)")
    p.add_argument("--batch", type=positive_int, default=1)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--precision", choices=list(PRECISIONS), default="fp32",
                   help="fp16/bf16 run under torch.autocast")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--compile", action="store_true", help="torch.compile every model")
    p.add_argument("--compile-mode", choices=["default", "reduce-overhead", "max-autotune"])
    p.add_argument("--fold-bn", action="store_true",
                   help="fold BatchNorm into the preceding convs (every model)")
    p.add_argument("--argmax", action="store_true", help="include the argmax to labels")
    p.add_argument("--threads", type=positive_int, help="torch.set_num_threads")
    p.add_argument("--warmup", type=positive_int, help="untimed calls (default 10 CUDA, 2 CPU)")
    p.add_argument("--iters", type=positive_int, help="timed calls (default 50 CUDA, 10 CPU)")
    p.add_argument("--backend", default=["torch"], type=name_list(BACKENDS),
                   metavar="B[,B…]",
                   help="runtimes to time each model in: torch, onnxruntime, openvino "
                        "(comma-separated; with --compare interleaved in one run)")
    p.add_argument("--compare", action="store_true",
                   help="interleave the timed calls of all models (round robin)")
    p.add_argument("--num-classes", type=positive_int, default=19)
    p.add_argument("--matmul-size", type=positive_int,
                   help="n of the fp32 matmul reference (default 2048 CPU, 8192 CUDA)")
    p.add_argument("--no-reference", action="store_true", help="skip the matmul reference")
    p.add_argument("--tf32", action="store_true", help="allow TF32 (CUDA; default: true fp32)")
    p.add_argument("--cudnn-benchmark", action=argparse.BooleanOptionalAction, default=True,
                   help="cuDNN autotuning (CUDA)")
    p.add_argument("--reference-paths", action="store_true",
                   help="the upsamplers' plain formulas, not their inference fast paths")
    p.add_argument("--no-floor", action="store_true",
                   help="no floor column (module runs then skip timing fpn_r18_bilinear)")
    p.add_argument("--json", metavar="FILE", help="write settings and results as JSON")
    p.add_argument("--overwrite", action="store_true",
                   help="allow --json to replace a file that is not JSON")
    p.set_defaults(func=run)


def _progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    """Time what ``args`` names, print the table and optionally write the JSON record; 1 when
    no row could be timed."""
    path = check_output(args.json, "--json", [], "json", args.overwrite) if args.json else None
    settings = BenchSettings(
        models=args.models, size=tuple(args.size) if args.size else None, batch=args.batch,
        device=args.device, precision=args.precision, channels_last=args.channels_last,
        compile=args.compile, fold_bn=args.fold_bn, argmax=args.argmax,
        warmup=args.warmup, iters=args.iters, compare=args.compare, threads=args.threads,
        num_classes=args.num_classes, modules=args.modules, channels=args.channels,
        reference=not args.no_reference, reference_size=args.matmul_size, tf32=args.tf32,
        cudnn_benchmark=args.cudnn_benchmark,
        compile_mode=None if args.compile_mode in (None, "default") else args.compile_mode,
        backends=args.backend, floor=not args.no_floor, reference_paths=args.reference_paths)
    result = run_benchmark(settings=settings, progress=_progress)
    print(format_report(result))
    if args.json:
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(result, indent=1))
        print(f"wrote {path}")
    if all(row.get("error") for row in result["results"]):
        reasons = sorted({row["error"] for row in result["results"]})
        print(f"rtseg bench: error: nothing could be timed ({'; '.join(reasons)})",
              file=sys.stderr)
        return 1
    return 0
