"""Deployment figures on CamVid: accuracy and latency of trained checkpoints in every runtime.

For each ``NAME=CHECKPOINT`` (trained on CamVid):

1. ``rtseg.export`` writes ``OUT/NAME/model.onnx`` (fp32, dynamic batch/H/W, with metadata;
   with ``--static`` fixed at 1×3×360×480) and ``model.int8.onnx`` (static QDQ, calibrated on
   ``--calib-images`` CamVid train images at the export size 360×480).
2. Every image of the test split (233 frames, 360×480, whole-image inference) is predicted by
   each variant: PyTorch eager fp32 (the checkpoint), ONNX Runtime fp32 and int8, OpenVINO fp32
   (f32 precision hint) and OpenVINO on the int8 file. Per variant: test mIoU, pixel accuracy,
   and the percentage of pixels whose class differs from PyTorch's prediction.
3. Latency of the same variants at each ``--sizes`` on a random input, ``--threads`` threads,
   the calls of one model's variants interleaved round robin (median and 10th–90th
   percentile of ``--iters`` calls after ``--warmup``).

Results go to ``OUT/NAME/results.json`` (a finished step is not redone: delete the file to
rerun), then two markdown tables are printed: every variant, and what int8 costs and gains
per model at the last size. Never time while another job uses the cores.

    python -m studies.deploy.run fpn_r18_bilinear=runs/probe/stage1/best.pt \\
        fanet18=runs/temporal/fanet18_s0/best.pt --data ../shared/data/camvid --out runs/deploy
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

import rtseg
from rtseg.bench import time_interleaved
from rtseg.data import from_config
from rtseg.deploy import runtimes as backends
from rtseg.errors import UsageError
from rtseg.inference.metrics import ConfusionMatrix
from rtseg.training.checkpoint import load_model
from studies.common import run_study

VARIANTS = ("torch", "ort_fp32", "ort_int8", "openvino_fp32", "openvino_int8")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoints", nargs="+", metavar="NAME=CHECKPOINT")
    p.add_argument("--data", default="../shared/data/camvid")
    p.add_argument("--out", default="runs/deploy")
    p.add_argument("--calib-images", type=int, default=64)
    p.add_argument("--sizes", nargs="*", default=["360x480", "512x1024"],
                   help="latency sizes HxW; none (a bare --sizes): accuracy only")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--limit", type=int, help="evaluate only the first N test images")
    p.add_argument("--skip-eval", action="store_true", help="latency only")
    p.add_argument("--static", action="store_true",
                   help="export with static shapes (1×3×360×480, the test frames' size)")
    return p.parse_args(argv)


def runners(model: torch.nn.Module, folder: Path, threads: int
            ) -> dict[str, Callable[[torch.Tensor], Any]]:
    """Each variant as a callable on a normalised 1×3×H×W tensor, returning logits."""
    fp32, int8 = folder / "model.onnx", folder / "model.int8.onnx"

    def eager(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return model(x)

    out: dict[str, Callable[[torch.Tensor], Any]] = {"torch": eager}
    out["ort_fp32"] = backends.OnnxRuntimeModel(fp32, threads)
    out["ort_int8"] = backends.OnnxRuntimeModel(int8, threads)
    if backends.installed("openvino"):
        out["openvino_fp32"] = backends.OpenVINOModel(fp32, threads)
        out["openvino_int8"] = backends.OpenVINOModel(int8, threads)
    return out


def export(name: str, ckpt: str, folder: Path, args: argparse.Namespace) -> None:
    """fp32 and int8 ONNX files of ``ckpt`` in ``folder`` (kept when they exist)."""
    if (folder / "model.int8.onnx").exists():
        return
    folder.mkdir(parents=True, exist_ok=True)
    try:
        print(rtseg.export(ckpt, folder / "model.onnx", size=(360, 480), int8_calib=args.data,
                           calib_images=args.calib_images, progress=True,
                           dynamic=not args.static))
    except rtseg.RtsegError as e:
        raise SystemExit(f"{name}: export failed ({e})") from None


def accuracy(config: dict, run: dict[str, Callable], args: argparse.Namespace
             ) -> dict[str, dict]:
    """Test mIoU, pixel accuracy and % pixels changed against PyTorch, per variant
    (``config``: the checkpoint's training config, which names the data set; read at --data)."""
    from tqdm import tqdm

    ds = from_config({**config, "data_root": args.data}, "test")
    cms = {v: ConfusionMatrix(ds.num_classes, ds.ignore_index) for v in run}
    changed = dict.fromkeys(run, 0)
    pixels = 0
    n = len(ds) if args.limit is None else min(args.limit, len(ds))
    for i in tqdm(range(n), desc="test", leave=False):
        image, label = ds[(i, 0)]
        preds = {v: torch.as_tensor(np.asarray(f(image[None]))).argmax(1) for v, f in run.items()}
        pixels += preds["torch"].numel()
        for v, pred in preds.items():
            cms[v].update(pred, label[None])
            changed[v] += int((pred != preds["torch"]).sum())
    scores = {v: cm.compute() for v, cm in cms.items()}
    return {v: {"miou": 100 * scores[v]["miou"], "pixel_acc": 100 * scores[v]["pixel_acc"],
                "pixels_changed_pct": 100 * changed[v] / pixels, "images": n} for v in run}


def latency(run: dict[str, Callable], size: tuple[int, int], args: argparse.Namespace
            ) -> dict[str, dict]:
    """Median and p10/p90 ms per variant at ``size``, the variants' calls interleaved."""
    x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(0))
    return time_interleaved({v: functools.partial(f, x) for v, f in run.items()},
                            warmup=args.warmup, iters=args.iters)


def table(results: dict[str, dict], sizes: list[str]) -> str:
    """Markdown: one row per model and variant."""
    head = ("| model | variant | test mIoU | pixels changed vs PyTorch | "
            + " | ".join(f"{s} ms (× ORT fp32)" for s in sizes) + " |")
    lines = [head, "|" + "---|" * (4 + len(sizes))]
    for name, res in results.items():
        for v in VARIANTS:
            acc = res.get("accuracy", {}).get(v)
            cells = [f"{acc['miou']:.1f}" if acc else "–",
                     f"{acc['pixels_changed_pct']:.2f} %" if acc else "–"]
            for s in sizes:
                lat = res.get("latency", {}).get(s, {})
                if v in lat:
                    ratio = lat["ort_fp32"]["median_ms"] / lat[v]["median_ms"]
                    cells.append(f"{lat[v]['median_ms']:.1f} ({ratio:.2f}×)")
                else:
                    cells.append("–")
            lines.append(f"| {name} | {v} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary(results: dict[str, dict], size: str | None) -> str:
    """Markdown: what int8 costs and gains per model (mIoU change, speed-up over ORT fp32 at
    ``size``; no speed columns when ``size`` is None)."""
    speed = [f"ORT int8 × ORT fp32 ({size})", f"OpenVINO int8 × ORT fp32 ({size})"] if size else []
    head = ["model", "fp32 test mIoU", "ORT int8 Δ mIoU", "OpenVINO int8 Δ mIoU", *speed]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, res in results.items():
        acc, lat = res.get("accuracy", {}), res.get("latency", {}).get(size, {})
        base = acc.get("ort_fp32", {}).get("miou")
        cells = [f"{base:.2f}" if base is not None else "–"]
        for v in ("ort_int8", "openvino_int8"):
            m = acc.get(v, {}).get("miou")
            cells.append(f"{m - base:+.2f}" if m is not None and base is not None else "–")
        for v in ("ort_int8", "openvino_int8") if size else ():
            ok = v in lat and "ort_fp32" in lat
            cells.append(f"{lat['ort_fp32']['median_ms'] / lat[v]['median_ms']:.2f}×" if ok
                         else "–")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.static and set(args.sizes) - {"360x480"}:
        raise UsageError(f"--static files run at 360x480 only; got --sizes "
                         f"{' '.join(args.sizes)}")
    torch.set_num_threads(args.threads)
    results = {}
    for spec in args.checkpoints:
        name, _, ckpt = spec.partition("=")
        folder = Path(args.out) / name
        export(name, ckpt, folder, args)
        path = folder / "results.json"
        res = json.loads(path.read_text()) if path.exists() else {}
        res.setdefault("latency", {})
        todo_eval = "accuracy" not in res and not args.skip_eval
        todo_sizes = [s for s in args.sizes if s not in res["latency"]]
        if todo_eval or todo_sizes:  # a finished model is not loaded again
            model, meta = load_model(ckpt, "cpu")
            run = runners(model, folder, args.threads)
            if todo_eval:
                res["accuracy"] = accuracy(meta["config"], run, args)
                path.write_text(json.dumps(res, indent=1))
            for s in todo_sizes:
                h, w = (int(v) for v in s.split("x"))
                res["latency"][s] = latency(run, (h, w), args)
                path.write_text(json.dumps(res, indent=1))
        results[name] = res
        print(f"{name}: done ({folder})", flush=True)
    print(table(results, args.sizes))
    print()
    print(summary(results, args.sizes[-1] if args.sizes else None))
    return 0


if __name__ == "__main__":
    sys.exit(run_study(main))
