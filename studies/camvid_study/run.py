"""The upsampler study on CamVid: same backbone, recipe and budget; only the upsampler changes.

Trains every ``fpn_r18_<up>`` and the faithful networks (``gain_r18``, ``fanet18``, ``gun``,
each with its paper's recipe from ``configs/camvid/``) for the same number of iterations on
random crops of the train split (model selection on val), evaluates each best checkpoint on
the whole 480×360 test frames (mIoU, per-class IoU, boundary F-score), times every model with
``rtseg bench`` in one interleaved run, and writes ``results.md``, ``results.json`` and a figure
of the same test frames predicted by every model into the output folder.

Every (model, seed) run lives in ``OUT/<model>_s<seed>/`` and resumes exactly where it stopped
(``last.pt``), so a budget larger than one sitting is spread over several by re-running the
same command. Finished runs are skipped. The table in docs/results.md came from::

    python -m studies.camvid_study.run --iters 400 --seeds 0 1 --faithful-seeds 0

and a report of whatever has finished so far, training nothing, from::

    python -m studies.camvid_study.run --iters 400 --seeds 0 1 --faithful-seeds 0 --report-only

The report also gives each upsampler's difference to bilinear, paired seed by seed (runs of
one seed share initial weights, data order and augmentation): the mean same-seed difference,
its 95 % Student-t interval, and "ahead" or "behind" when the interval excludes 0, "not shown"
otherwise (no margin was fixed in advance, so never "level").
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import rtseg
from rtseg.training.config import load_config
from studies.common import (
    CAMVID,
    ROOT,
    THIN,
    load_runs,
    prediction_rows,
    run_study,
    save_grid,
    saved_latency,
    train_then_test,
)
from studies.common import camvid_latency as _camvid_latency
from studies.stats import difference_table, per_class_table, spread

UPSAMPLERS = ["bilinear", "gai", "fast_attention", "ifa", "gum"]
FAITHFUL = ["gain_r18", "fanet18", "gun"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", default=str(CAMVID))
    p.add_argument("--out", default="runs/study_camvid")
    p.add_argument("--models", nargs="+",
                   default=[f"fpn_r18_{u}" for u in UPSAMPLERS] + FAITHFUL)
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--faithful-seeds", nargs="+", type=int, default=None,
                   help="seeds for the faithful networks (default: --seeds)")
    p.add_argument("--iters", type=int, default=2000, help="training iterations per run")
    p.add_argument("--crop", nargs=2, type=int, default=[240, 320], metavar=("H", "W"))
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--device", default="auto")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--bench-iters", type=int, default=20)
    p.add_argument("--no-bench", action="store_true",
                   help="skip the latency measurement (keep an earlier run's timings)")
    p.add_argument("--figure-frames", nargs="+", type=int, default=[0, 60, 120, 200],
                   help="test frame indices shown in the figure")
    p.add_argument("--report-only", action="store_true",
                   help="train and time nothing; report what exists")
    return p.parse_args(argv)


def run_one(model: str, seed: int, args: argparse.Namespace) -> dict[str, Any] | None:
    """Train (or resume) one run, then evaluate its best checkpoint on test; cached on disk."""
    run = Path(args.out) / f"{model}_s{seed}"

    def train(resume: Path | None) -> None:
        overrides = [
            f"data_root={args.data}", f"iters={args.iters}",
            f"crop_size=[{args.crop[0]},{args.crop[1]}]",
            f"batch_size={args.batch}", f"seed={seed}", f"out_dir={args.out}",
            f"run_name={run.name}", f"device={args.device}", f"workers={args.workers}",
            f"eval_interval={max(args.iters // 4, 1)}",
            f"ckpt_interval={max(args.iters // 20, 1)}",
            # OHEM keeps at least crop/16 pixels per image, as in FANet, at the study's crop.
            f"ohem_min_kept={args.crop[0] * args.crop[1] // 16}",
        ]
        cfg = load_config(ROOT / "configs" / "camvid" / f"{model}.yaml", overrides)
        cfg.warmup_iters = min(cfg.warmup_iters, args.iters // 10)
        rtseg.train(cfg, resume=resume)

    return train_then_test(run, train, data=args.data, device=args.device,
                           report_only=args.report_only)


def latency(models: list[str], args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Median latency of every model at 360×480, batch 1, timed in one interleaved run."""
    return _camvid_latency(models, args.device, args.bench_iters)


def figure(models: list[str], args: argparse.Namespace, path: Path) -> None:
    """The same test frames: image, ground truth, then each model's prediction (seed 0 runs)."""
    from rtseg.data import CamVid

    ds = CamVid(args.data, "test")
    segs = load_runs({m.replace("fpn_r18_", ""): Path(args.out) / f"{m}_s{args.seeds[0]}"
                      for m in models}, args.device)
    save_grid(prediction_rows(ds, args.figure_frames, segs), path)


def report(results: dict[str, list[dict[str, Any]]], speed: dict[str, dict[str, Any]],
           args: argparse.Namespace) -> str:
    classes = next(iter(next(iter(results.values())))).get("classes")
    timed = bool(speed)  # --no-bench: no latency column rather than an empty one
    lines = [
        f"Budget: {args.iters} iterations × batch {args.batch} of random {args.crop[0]}×"
        f"{args.crop[1]} crops (scale 0.5–2, flip, colour jitter) of CamVid train, from scratch; "
        f"best checkpoint on val; test on the 233 whole 480×360 frames. Seeds: "
        f"{', '.join(map(str, args.seeds))}. Figures are mean (min–max over seeds) in %.",
        "",
        "| model | seeds | mIoU | boundary F (2 px) | " + " | ".join(THIN) + " |"
        + (" latency (ms) |" if timed else ""),
        "|---|---|---|---|" + "---|" * len(THIN) + ("---|" if timed else ""),
    ]
    for model, runs in results.items():
        ious = {c: [r["iou"][classes.index(c)] for r in runs] for c in THIN}
        ms = speed.get(model, {}).get("median_ms")
        lines.append(
            f"| {model} | {len(runs)} | {spread([r['miou'] for r in runs])} | "
            f"{spread([r['mbf'] for r in runs])} | "
            + " | ".join(spread(ious[c]) for c in THIN) + " |"
            + (f" {'' if ms is None else f'{ms:.1f}'} |" if timed else "")
        )
    baseline = results.get("fpn_r18_bilinear")
    others = [m for m in results if m.startswith("fpn_r18_") and m != "fpn_r18_bilinear"]
    if baseline and others:
        lines += ["", "Difference to fpn_r18_bilinear in points (same head, only the upsampler "
                  "changes), over the seeds both have: the mean same-seed difference with its "
                  "95 % Student-t interval; ahead or behind when the interval excludes 0, not "
                  "shown otherwise.", ""]
        lines += difference_table(
            [(m.replace("fpn_r18_", ""), results[m], baseline) for m in others],
            [("Δ mIoU (95 % CI)", "miou", "paired"), ("by seed", "miou", "by_seed"),
             ("Δ boundary F (95 % CI)", "mbf", "paired"), ("by seed", "mbf", "by_seed")],
            head="upsampler")
    lines += [""] + per_class_table(results, classes)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, list[dict[str, Any]]] = {}
    for seed in args.seeds:  # every model's first seed before any second seed
        for model in args.models:
            if model in FAITHFUL and seed not in (args.faithful_seeds or args.seeds):
                continue
            res = run_one(model, seed, args)
            if res is not None:
                results.setdefault(model, []).append(dict(res, seed=seed))
    if not results:
        print("no finished runs yet")
        return 1
    if args.no_bench or args.report_only:
        speed = saved_latency(out, list(results))
    else:
        speed = latency(list(results), args)
    text = report(results, speed, args)
    (out / "results.md").write_text(text)
    (out / "results.json").write_text(json.dumps(
        {"args": vars(args), "runs": results, "latency": speed}, indent=2, default=str))
    figure(list(results), args, out / "predictions.png")
    print(text)
    print(f"written: {out / 'results.md'}, {out / 'results.json'}, {out / 'predictions.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(run_study(main))
