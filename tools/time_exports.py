"""Exported files against each other in one runtime, interleaved: what an export choice costs.

Each model is exported (static batch and size, random weights, BatchNorm statistics randomised
so that no branch is trivially zero) in the requested variants, opened in the runtime with the
given thread count, and every file is timed in one interleaved run
(:func:`rtseg.bench.time_interleaved`). Variants:

* ``fast``: the graph ``rtseg export --static`` writes (each upsampler's export-safe fast
  formula, with the size-specific ones of a static graph: :func:`rtseg.layers.static_sizes`);
* ``dynamic``: the graph ``rtseg export`` writes by default (dynamic batch, H and W), run at
  the same size;
* ``plain``: the same model exported inside :func:`rtseg.layers.reference_paths` (the plain
  formulas every export held before);
* ``gather``: ``fast`` with GUM's sampling as four gathers and a blend (``grid_sample="gather"``;
  models without GUM skip it).

``--int8`` adds each file's int8 twin (:func:`rtseg.deploy.quantize.quantize_int8`, what
``rtseg export --int8`` writes, calibrated on ``--calib-images`` built-in synthetic scenes at the
size) to the same interleaved run, with its speed-up over its own fp32 file.

The table gives the median and 10th–90th percentile latency in ms, and each file's median over
the first model's ``fast`` file (the floor column of ``rtseg bench``)::

    python -m tools.time_exports fpn_r18_bilinear fpn_r18_gai fpn_r18_ifa fpn_r18_gum \\
        fpn_r18_fast_attention --variants plain fast gather --size 512 1024 --threads 2
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import warnings
from pathlib import Path

import torch

from rtseg import create_model
from rtseg.bench import time_interleaved
from rtseg.deploy.export import export_onnx
from rtseg.deploy.quantize import calibration_batches, quantize_int8
from rtseg.deploy.runtimes import RUNTIMES
from rtseg.layers import reference_paths
from studies.common import randomise_weights, run_study

VARIANTS = ("fast", "dynamic", "plain", "gather")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("models", nargs="+")
    p.add_argument("--variants", nargs="+", default=["fast"], choices=VARIANTS)
    p.add_argument("--runtime", default="onnxruntime", choices=sorted(RUNTIMES))
    p.add_argument("--size", nargs=2, type=int, default=[512, 1024], metavar=("H", "W"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--num-classes", type=int, default=19)
    p.add_argument("--int8", action="store_true", help="also time each file's int8 twin")
    p.add_argument("--calib-images", type=int, default=8)
    p.add_argument("--files", default=None, metavar="DIR",
                   help="keep the exported files in DIR and reuse those already there (delete "
                        "DIR after changing an export formula); default: a temporary folder")
    p.add_argument("--prepare-only", action="store_true",
                   help="export (and quantise) into --files, time nothing: the exports can "
                        "run beside other work, the timing later on a quiet CPU")
    args = p.parse_args(argv)
    if args.prepare_only and args.files is None:
        p.error("--prepare-only needs --files DIR")
    return args


def export_variant(name: str, variant: str, size: tuple[int, int], num_classes: int,
                   folder: Path) -> Path | None:
    """``name`` exported as ``variant`` into ``folder``; None when the variant does not apply."""
    model = create_model(name, num_classes, aux=False).eval()
    if variant == "gather" and not any(getattr(m, "can_gather", False) for m in model.modules()):
        return None
    path = folder / f"{name}.{variant}.{size[0]}x{size[1]}.k{num_classes}.onnx"
    if path.exists():
        return path
    torch.manual_seed(0)
    randomise_weights(model)
    paths = reference_paths() if variant == "plain" else contextlib.nullcontext()
    with paths, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return export_onnx(model, path, size, dynamic=variant == "dynamic",
                           grid_sample="gather" if variant == "gather" else "op")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    size = (args.size[0], args.size[1])
    x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(0))
    with contextlib.ExitStack() as stack:
        if args.files is None:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        else:
            folder = Path(args.files)
            folder.mkdir(parents=True, exist_ok=True)
        runs = {}
        for name in args.models:
            for variant in args.variants:
                path = export_variant(name, variant, size, args.num_classes, folder)
                if path is None:
                    continue
                files = {f"{name} [{variant}]": path}
                if args.int8:
                    int8 = path.with_suffix(f".int8_c{args.calib_images}.onnx")
                    if not int8.exists():
                        with warnings.catch_warnings():
                            warnings.simplefilter("ignore")
                            quantize_int8(path, int8, calibration_batches(
                                "synthetic", size, args.calib_images))
                    files[f"{name} [{variant} int8]"] = int8
                print(f"ready: {', '.join(str(f) for f in files.values())}", flush=True)
                if args.prepare_only:
                    continue
                for key, file in files.items():
                    seg = RUNTIMES[args.runtime](file, threads=args.threads)
                    runs[key] = (lambda s=seg: s(x))
        if args.prepare_only:
            return 0
        stats = time_interleaved(runs, warmup=args.warmup, iters=args.iters)
    first = f"{args.models[0]} [fast]"
    floor = (stats.get(first) or next(iter(stats.values())))["median_ms"]
    print(f"{args.runtime}, {size[0]}×{size[1]}, batch 1, {args.threads} threads, "
          f"{args.iters} interleaved calls each")
    print(f"| file | median ms | p10–p90 ms | × {first if first in stats else 'first'} "
          "| int8 speed-up over its fp32 file |\n|---|---|---|---|---|")
    for key, s in stats.items():
        fp32 = stats.get(key.replace(" int8]", "]")) if key.endswith(" int8]") else None
        gain = f"{fp32['median_ms'] / s['median_ms']:.2f}×" if fp32 else ""
        print(f"| {key} | {s['median_ms']:.1f} | {s['p10_ms']:.0f}–{s['p90_ms']:.0f} | "
              f"{s['median_ms'] / floor:.3f} | {gain} |")
    return 0


if __name__ == "__main__":
    sys.exit(run_study(main))
