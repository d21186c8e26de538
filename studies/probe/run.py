"""The upsamplers on a shared, trained backbone: CamVid, two stages, one command, resumable.

Stage 1 trains ``fpn_r18_bilinear`` on CamVid train for several thousand iterations (the recipe
below: the best this 2-core CPU affords), from scratch. Stage 2 puts a fresh decoder with each
upsampler (``fpn_r18_<up>``: bilinear, gai, fast_attention, ifa, gum) on stage 1's best
backbone (``init_from`` + ``init_parts=backbone``), freezes the backbone (``freeze=backbone``)
and trains only the decoder, same recipe and budget, for every seed. A fine-tuning variant
trains bilinear and the best stage-2 upsampler with the backbone unfrozen at 0.1× the learning
rate. Every run is evaluated on the 233 test frames (mIoU, per-class IoU, boundary F at 1, 2
and 3 px); the five ``fpn_r18`` models are timed in one interleaved ``rtseg bench`` run; the
report gives the tables with the seed spread, the difference to bilinear paired seed by seed
(mean, 95 % Student-t interval, ahead / behind / not shown), and a figure of boundary crops
(test-frame windows around poles and sign edges) per upsampler.

Every run lives in ``OUT/<name>/`` and resumes exactly (``last.pt``): re-run the same command
to continue after a stop. Finished runs (``metrics_test.json``) are skipped::

    python -m studies.probe.run --out runs/probe_camvid            # everything
    python -m studies.probe.run --stage1-only                      # the CamVid model alone
    python -m studies.probe.run --report-only                      # tables of what exists
    python -m studies.probe.run --time-step                        # full vs decoder-only step

More seeds for some runs only: ``--seeds 0 1 2 --finetune-seeds 0 1 --upsamplers bilinear gum``
trains the frozen-backbone seed 2 of those two and nothing else.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

import rtseg
from studies.common import (
    CAMVID,
    STAGE1_CONFIG,
    THIN,
    run_study,
    saved_latency,
    stage1_recipe,
    train_then_test,
)
from studies.common import camvid_latency as _camvid_latency
from studies.probe.figure import boundary_figure
from studies.stats import difference_table, per_class_table, spread

UPSAMPLERS = ["bilinear", "gai", "fast_attention", "ifa", "gum"]
TOLERANCES = (1, 2, 3)
STAGE1 = "stage1_fpn_r18_bilinear"
# The recipe of both stages: studies.common.STAGE1_CONFIG overridden by stage1_recipe().


def recipe(args: argparse.Namespace) -> dict[str, Any]:
    return stage1_recipe(args.crop, args.batch, args.workers)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", default=str(CAMVID))
    p.add_argument("--out", default="runs/probe_camvid")
    p.add_argument("--stage1-iters", type=int, default=5000)
    p.add_argument("--iters", type=int, default=1000, help="stage-2 iterations per run")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    p.add_argument("--finetune-seeds", nargs="+", type=int, default=None,
                   help="seeds of the fine-tuning runs (default: --seeds)")
    p.add_argument("--upsamplers", nargs="+", default=UPSAMPLERS, choices=UPSAMPLERS)
    p.add_argument("--crop", nargs=2, type=int, default=[240, 320], metavar=("H", "W"))
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--device", default="auto")
    p.add_argument("--bench-iters", type=int, default=20)
    p.add_argument("--no-bench", action="store_true", help="keep an earlier run's timings")
    p.add_argument("--stage1-only", action="store_true")
    p.add_argument("--report-only", action="store_true", help="train nothing; report")
    p.add_argument("--time-step", action="store_true",
                   help="time a full and a decoder-only training step, interleaved, and exit")
    return p.parse_args(argv)


def run_one(name: str, values: dict[str, Any], args: argparse.Namespace) -> dict | None:
    """Train (or resume) ``OUT/name`` with ``values``, then evaluate best.pt on test; cached."""
    run = Path(args.out) / name

    def train(resume: Path | None) -> None:
        if resume:  # the run's own config.yaml, as it was started
            rtseg.train(run / "config.yaml", resume=resume)
        else:
            rtseg.train(STAGE1_CONFIG,
                        **{**recipe(args), **values, "data_root": args.data,
                           "out_dir": args.out, "run_name": name, "device": args.device})

    return train_then_test(run, train, data=args.data, device=args.device,
                           report_only=args.report_only, tolerance=TOLERANCES)


def stage2_values(up: str, seed: int, args: argparse.Namespace, finetune: bool) -> dict:
    best = str(Path(args.out) / STAGE1 / "best.pt")
    values = {"model": f"fpn_r18_{up}", "seed": seed, "iters": args.iters,
              "eval_interval": max(args.iters // 4, 1), "ckpt_interval": 100,
              "warmup_iters": min(200, args.iters // 10), "init_from": best,
              "init_parts": "backbone"}
    values.update({"backbone_lr_mult": 0.1} if finetune else {"freeze": "backbone"})
    return values


def latency(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Median latency of the five fpn_r18 models at 360×480, batch 1, one interleaved run."""
    return _camvid_latency([f"fpn_r18_{u}" for u in args.upsamplers], args.device,
                           args.bench_iters)


def time_step(args: argparse.Namespace, steps: int = 6) -> None:
    """Seconds per training step of fpn_r18_gai, whole network vs frozen backbone."""
    from rtseg.losses import build_loss
    from rtseg.training import weights

    x, y = torch.randn(8, 3, 240, 320), torch.randint(0, 11, (8, 240, 320))
    nets = {"full": rtseg.create_model("fpn_r18_gai", 11),
            "frozen backbone": rtseg.create_model("fpn_r18_gai", 11)}
    weights.freeze(nets["frozen backbone"], "backbone")
    loss = build_loss("ohem", (0.4, 0.4), min_kept=4800 * 8)
    opts = {k: torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.01)
            for k, m in nets.items()}
    times: dict[str, list[float]] = {k: [] for k in nets}
    for i in range(steps + 1):
        for k, m in nets.items():
            m.train()
            t = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = m(x)
            value, _ = loss((out[0].float(), [a.float() for a in out[1]]), y)
            opts[k].zero_grad()
            value.backward()
            opts[k].step()
            if i:  # the first round warms up
                times[k].append(time.perf_counter() - t)
    full = statistics.median(times["full"])
    for k, v in times.items():
        print(f"{k}: {statistics.median(v):.3f} s/step (median of {steps}, batch 8, 240×320, "
              f"bf16, {torch.get_num_threads()} threads) = {statistics.median(v) / full:.2f}×")


def table(results: dict[str, list[dict]], speed: dict[str, dict], classes: list[str]) -> list[str]:
    lines = ["| run | seeds | mIoU | BF@1 | BF@2 | BF@3 | " + " | ".join(THIN)
             + " | latency (ms) |", "|---|---|---|---|---|---|" + "---|" * len(THIN) + "---|"]
    for name, runs in results.items():
        bfs = [spread([r["mbf_at"][str(t)] for r in runs]) for t in TOLERANCES]
        thin = [spread([r["iou"][classes.index(c)] for r in runs]) for c in THIN]
        model = runs[0].get("model", "")
        ms = speed.get(model, {}).get("median_ms")
        lines.append(f"| {name} | {len(runs)} | {spread([r['miou'] for r in runs])} | "
                     + " | ".join(bfs) + " | " + " | ".join(thin)
                     + f" | {'' if ms is None else f'{ms:.1f}'} |")
    return lines


def report(results: dict[str, list[dict]], speed: dict[str, dict]) -> str:
    classes = next(iter(results.values()))[0]["classes"]
    lines = ["Figures are mean (min–max over seeds) in %; BF@k is the boundary F-score with a "
             "k-pixel tolerance, averaged over classes.", ""] + table(results, speed, classes)
    for r in (r for runs in results.values() for r in runs):  # the cells read flat keys
        r.update({f"bf{t}": r["mbf_at"][str(t)] for t in TOLERANCES})
    pairs = []  # (run, bilinear with the same backbone treatment)
    for n in results:
        kind, _, up = n.partition(" ")
        base = results.get(f"{kind} bilinear")
        if kind in ("frozen", "finetune") and up != "bilinear" and base:
            pairs.append((n, base))
    if pairs:
        lines += ["", "Difference to bilinear with the same backbone treatment, in points, over "
                  "the seeds both have: the mean same-seed difference with its 95 % Student-t "
                  "interval; ahead or behind when the interval excludes 0, not shown otherwise.",
                  ""]
        lines += difference_table(
            [(n, results[n], base) for n, base in pairs],
            [("Δ mIoU (95 % CI)", "miou", "paired"), ("by seed", "miou", "by_seed")]
            + [(f"Δ BF@{t} (95 % CI)", f"bf{t}", "paired") for t in TOLERANCES]
            + [("BF@2 by seed", "bf2", "by_seed")])
    lines += [""] + per_class_table(results, classes, head="run")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.time_step:
        time_step(args)
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, list[dict]] = {}
    stage1 = run_one(STAGE1, {"iters": args.stage1_iters, "eval_interval": 500,
                              "ckpt_interval": 100}, args)
    if stage1 is None:
        print("stage 1 has not finished: nothing to report")
        return 1
    results["stage 1 (whole network, bilinear)"] = [dict(stage1, model="fpn_r18_bilinear")]
    if args.stage1_only:
        print(report(results, {}))
        return 0
    for finetune in (False, True):
        ups = args.upsamplers if not finetune else _finetune_choice(results)
        for seed in (args.finetune_seeds or args.seeds) if finetune else args.seeds:
            for up in ups:
                prefix = "finetune" if finetune else "frozen"
                res = run_one(f"{prefix}_{up}_s{seed}", stage2_values(up, seed, args, finetune),
                              args)
                if res is not None:
                    results.setdefault(f"{prefix} {up}", []).append(
                        dict(res, seed=seed, model=f"fpn_r18_{up}"))
    saved = out / "results.json"
    speed = saved_latency(out) if args.no_bench or args.report_only else latency(args)
    text = report(results, speed)
    (out / "results.md").write_text(text)
    saved.write_text(json.dumps({"args": vars(args), "runs": results, "latency": speed},
                                indent=1, default=str))
    boundary_figure(args, out / "boundary_crops.png")
    print(text)
    return 0


def _finetune_choice(results: dict[str, list[dict]]) -> list[str]:
    """Bilinear and the upsampler with the best mean frozen-backbone mIoU (if not bilinear)."""
    frozen = {n.split(" ", 1)[1]: statistics.fmean(r["miou"] for r in runs)
              for n, runs in results.items() if n.startswith("frozen ")}
    best = max((u for u in frozen if u != "bilinear"), key=frozen.get, default=None)
    return ["bilinear"] + ([best] if best else [])


if __name__ == "__main__":
    sys.exit(run_study(main))
