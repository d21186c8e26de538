"""``rtseg train`` and ``rtseg demo`` (the main job)."""

from __future__ import annotations

import argparse

from ..registry import list_models
from .types import positive_int


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model (config file + key=value overrides)")
    p.add_argument("--config", help="YAML file of training fields (see configs/)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR exactly")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="override config fields")
    p.set_defaults(func=run_train)

    p = sub.add_parser("demo", help="the main job: train, evaluate, predict, plot")
    p.add_argument("--data", help="a CamVid/Cityscapes/folder data set (default: synthetic)")
    p.add_argument("--model", default="fpn_r18_gai", choices=list_models(), metavar="MODEL")
    p.add_argument("--iters", type=positive_int, default=300)
    p.add_argument("--out", default="runs")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="override config fields")
    p.set_defaults(func=run_demo)


def run_train(args: argparse.Namespace) -> int:
    from ..api import train
    from ..engine.config import parse_overrides

    run = train(args.config, resume=args.resume, **parse_overrides(args.overrides))
    print(f"run folder: {run}")
    return 0


def run_demo(args: argparse.Namespace) -> int:
    from ..engine.config import parse_overrides
    from ..engine.demo import demo_config, run_demo

    cfg = demo_config(args.data, args.model, args.iters, args.out,
                      **parse_overrides(args.overrides))
    where = f" ({cfg.data_root})" if cfg.data_root else " (built-in synthetic street scenes)"
    print(f"rtseg demo: training {cfg.model} on {cfg.dataset}{where} for {cfg.iters} "
          f"iterations")
    out = run_demo(cfg)
    run, res = out["run"], out["metrics"]
    print("\n=== rtseg demo finished ===")
    print(f"model {cfg.model}, data {cfg.dataset}, {cfg.iters} iterations in "
          f"{out['train_seconds']:.0f} s (total {out['seconds']:.0f} s)")
    print(f"test mIoU {100 * res['miou']:.2f}  pixel acc {100 * res['pixel_acc']:.2f}  "
          f"boundary F {100 * res['mbf']:.2f}")
    print(f"run folder:   {run}")
    print(f"  checkpoints {run / 'best.pt'}, {run / 'last.pt'}")
    print(f"  log         {run / 'log.jsonl'}")
    print(f"  plot        {run / 'plot.png'}")
    print(f"  metrics     {run / 'metrics_test.json'}")
    print(f"  predictions {run / 'predictions'} ({len(out['overlays'])} overlays)")
    return 0
