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

    python scripts/study_camvid.py --iters 400 --seeds 0 1 --faithful-seeds 0

and a report of whatever has finished so far, training nothing, from::

    python scripts/study_camvid.py --iters 400 --seeds 0 1 --faithful-seeds 0 --report-only

The report also gives each upsampler's difference to bilinear and whether it exceeds the
spread over seeds (a difference within the spread is reported as no difference).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import rtseg  # noqa: E402
from rtseg.engine.config import load_config  # noqa: E402

UPSAMPLERS = ["bilinear", "gai", "fast_attention", "ifa", "gum"]
FAITHFUL = ["gain_r18", "fanet18", "gun"]
THIN = ["Pole", "SignSymbol", "Pedestrian", "Bicyclist"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "camvid"))
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
    metrics = run / "metrics_test.json"
    if metrics.is_file():
        return json.loads(metrics.read_text())
    if args.report_only:
        return None
    overrides = [
        f"data_root={args.data}", f"iters={args.iters}",
        f"crop_size=[{args.crop[0]},{args.crop[1]}]",
        f"batch_size={args.batch}", f"seed={seed}", f"out_dir={args.out}",
        f"run_name={run.name}", f"device={args.device}", f"workers={args.workers}",
        f"eval_interval={max(args.iters // 4, 1)}", f"ckpt_interval={max(args.iters // 20, 1)}",
        # OHEM keeps at least crop/16 pixels per image, as in FANet, at the study's crop size.
        f"ohem_min_kept={args.crop[0] * args.crop[1] // 16}",
    ]
    cfg = load_config(ROOT / "configs" / "camvid" / f"{model}.yaml", overrides)
    cfg.warmup_iters = min(cfg.warmup_iters, args.iters // 10)
    rtseg.train(cfg, resume=run if (run / "last.pt").is_file() else None)
    res = rtseg.evaluate(run / "best.pt", data=args.data, split="test", device=args.device)
    metrics.write_text(json.dumps(res, indent=2))  # the run is done
    return res


def latency(models: list[str], args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Median latency of every model at 360×480, batch 1, timed in one interleaved run."""
    from rtseg.bench import benchmark

    rows = benchmark(models, size=(360, 480), batch=1, device=args.device, num_classes=11,
                     iters=args.bench_iters, compare=True, reference=False)
    return {r["name"]: r for r in rows}


def saved_latency(out: Path, models: list[str]) -> dict[str, dict[str, Any]]:
    """The timings an earlier call wrote to ``out/results.json``, for ``models``; {} if none.

    CPU latency drifts with the machine's load, so a report that trains nothing keeps the
    timings taken in the study run rather than quietly replacing them with new ones.
    """
    try:
        saved = json.loads((out / "results.json").read_text()).get("latency") or {}
    except (OSError, ValueError, AttributeError):
        return {}
    return {m: saved[m] for m in models if isinstance(saved.get(m), dict)}


def spread(values: list[float]) -> str:
    mean = statistics.fmean(values)
    if len(values) == 1:
        return f"{100 * mean:.1f}"
    return f"{100 * mean:.1f} ({100 * min(values):.1f}–{100 * max(values):.1f})"


def verdict(runs: list[dict[str, Any]], baseline: list[dict[str, Any]], key: str) -> str:
    """Mean difference to the baseline in points, and whether it exceeds the seed spread.

    The spread is the larger of the two min–max ranges over seeds; a difference no larger than
    it is reported as no difference. With one seed on either side the spread is unknown.
    """
    a, b = [r[key] for r in runs], [r[key] for r in baseline]
    delta = 100 * (statistics.fmean(a) - statistics.fmean(b))
    if len(a) < 2 or len(b) < 2:
        return f"{delta:+.1f} (1 seed)"
    spread_ = 100 * max(max(a) - min(a), max(b) - min(b))
    if abs(delta) <= spread_:
        return f"{delta:+.1f} (≤ spread {spread_:.1f}: no difference)"
    return f"{delta:+.1f} (> spread {spread_:.1f})"


def by_seed(runs: list[dict[str, Any]], baseline: list[dict[str, Any]], key: str) -> str:
    """The difference to the baseline seed by seed (same initial weights and data order)."""
    base = {r.get("seed"): r[key] for r in baseline}
    pairs = [(r.get("seed"), r[key] - base[r.get("seed")]) for r in runs if r.get("seed") in base]
    return ", ".join(f"s{seed} {100 * d:+.1f}" for seed, d in pairs)


def load_runs(runs: dict[str, Path], device: str) -> dict:
    """Segmenters of the runs whose ``best.pt`` exists, by title."""
    return {title: rtseg.load(run / "best.pt", device=device)
            for title, run in runs.items() if (run / "best.pt").is_file()}


def save_grid(rows: list[list[tuple[str, torch.Tensor]]], path: Path,
              cell: tuple[float, float] = (2.4, 1.9)) -> None:
    """A figure of H×W×3 uint8 pictures, one row per list of (title, picture)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = max(len(r) for r in rows)
    fig, axes = plt.subplots(len(rows), cols, figsize=(cell[0] * cols, cell[1] * len(rows)),
                             squeeze=False)
    for r, panels in enumerate(rows):
        for c, (title, picture) in enumerate(panels):
            axes[r, c].imshow(picture.numpy(), interpolation="nearest")
            axes[r, c].set_axis_off()
            axes[r, c].set_title(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def per_class_table(results: dict[str, list[dict[str, Any]]], classes: list[str],
                    head: str = "model") -> list[str]:
    """Markdown rows of the seed-mean IoU (%) of every class, one row per entry."""
    lines = ["Per-class IoU (%), seed mean:", "",
             f"| {head} | " + " | ".join(classes) + " |", "|---|" + "---|" * len(classes)]
    for name, runs in results.items():
        means = [statistics.fmean(r["iou"][k] for r in runs) for k in range(len(classes))]
        lines.append(f"| {name} | " + " | ".join(f"{100 * v:.1f}" for v in means) + " |")
    return lines


def figure(models: list[str], args: argparse.Namespace, path: Path) -> None:
    """The same test frames: image, ground truth, then each model's prediction (seed 0 runs)."""
    from rtseg.data import CamVid

    ds = CamVid(args.data, "test")
    palette = torch.tensor(ds.palette + [(0, 0, 0)] * (256 - len(ds.palette)), dtype=torch.uint8)
    segs = load_runs({m.replace("fpn_r18_", ""): Path(args.out) / f"{m}_s{args.seeds[0]}"
                      for m in models}, args.device)
    rows = []
    for index in [i for i in args.figure_frames if i < len(ds)]:
        image, label = ds.load(index)
        rows.append([("image", image.permute(1, 2, 0)), ("ground truth", palette[label])]
                    + [(name, palette[seg(image)]) for name, seg in segs.items()])
    save_grid(rows, path)


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
                  "changes):", "",
                  "| upsampler | Δ mIoU | by seed | Δ boundary F | by seed |",
                  "|---|---|---|---|---|"]
        for model in others:
            lines.append(f"| {model.replace('fpn_r18_', '')} | "
                         f"{verdict(results[model], baseline, 'miou')} | "
                         f"{by_seed(results[model], baseline, 'miou')} | "
                         f"{verdict(results[model], baseline, 'mbf')} | "
                         f"{by_seed(results[model], baseline, 'mbf')} |")
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
    sys.exit(main())
