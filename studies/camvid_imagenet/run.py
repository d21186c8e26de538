"""CamVid from ImageNet: ``fpn_lite0_<up>`` fine-tuned from EfficientNet-Lite0's ImageNet
weights, and the same recipe and budget from random weights beside it. One command, resumable::

    python -m studies.camvid_imagenet.run                   # both runs, test scores, JSON, figure
    python -m studies.camvid_imagenet.run --inits imagenet  # the ImageNet run only
    python -m studies.camvid_imagenet.run --report-only     # JSON and figure from finished runs

Each run trains with ``configs/camvid/<model>.yaml`` (the train-only recipe every
``fpn_lite0_*`` shares) and this study's :data:`RECIPE` on top: trained on train + val (468
frames, CamVid's usual protocol for test figures), Lovász-softmax added to the loss, one
validation pass at the end (on frames it trained on: no model selection; ``best.pt`` is the last
checkpoint). ``pretrained_backbone=imagenet`` or ``none``; each run resumes from its
``last.pt``; its ``best.pt`` is then scored on the 233 test frames at the recipe's
``eval_scale`` (the network sees each 480×360 frame at 960×720, the labels are scored at
480×360), with boundary F at 1, 2 and 3 px. The summary goes to
``docs/results/camvid_imagenet.json`` and the test-frame predictions to
``docs/camvid_imagenet_predictions.png``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

import torch

import rtseg
from rtseg.data import CamVid
from rtseg.training.config import load_config
from studies.common import (
    CAMVID,
    ROOT,
    THIN,
    load_runs,
    prediction_rows,
    run_study,
    save_grid,
    train_seconds,
    train_then_test,
)

INITS = {"imagenet": "imagenet", "scratch": None}
# the study's fields over the shared config: bf16 autocast (0.73× the fp32 step) buys 4500
# iterations in the wall time of 3000; ``--set amp=false iters=3000 eval_interval=3000`` gives
# back the previous recipe, ``--set train_split=train lovasz_weight=0 amp=false iters=3000
# eval_interval=500`` the first, train-only one (best checkpoint on val)
RECIPE = ["train_split=trainval", "lovasz_weight=1.0", "amp=true", "iters=4500",
          "eval_interval=4500"]
TOLERANCES = (1, 2, 3)
# keys of the random-weights row in the record: the same budget as the ImageNet run, or (until
# it is run again) an earlier recipe's
SAME_BUDGET, OTHER_BUDGET = "same_budget_from_random_weights", "from_random_weights_other_budget"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="fpn_lite0_gum")
    p.add_argument("--data", default=str(CAMVID))
    p.add_argument("--out", default="runs/camvid_imagenet_trainval")
    p.add_argument("--inits", nargs="+", default=list(INITS), choices=list(INITS))
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="config overrides for every run (e.g. iters=50 for a smoke run)")
    p.add_argument("--device", default="auto")
    p.add_argument("--docs", default=str(ROOT / "docs"), help="where the JSON and figure go")
    p.add_argument("--figure-frames", nargs="+", type=int, default=[13, 61, 120, 201])
    p.add_argument("--report-only", action="store_true")
    return p.parse_args(argv)


def config_of(init: str, args: argparse.Namespace):
    """The recipe with this run's fields (data, output folder, backbone initialisation)."""
    overrides = [f"data_root={args.data}", f"out_dir={args.out}",
                 f"run_name={args.model}_{init}", f"device={args.device}",
                 f"pretrained_backbone={INITS[init] or 'null'}", *RECIPE, *args.set]
    return load_config(ROOT / "configs" / "camvid" / f"{args.model}.yaml", overrides)


def run_one(init: str, args: argparse.Namespace) -> dict[str, Any] | None:
    """Train (or resume) one run, then score its best checkpoint on test; cached on disk."""
    cfg = config_of(init, args)
    return train_then_test(Path(args.out) / cfg.run_name,
                           lambda resume: rtseg.train(cfg, resume=resume), data=args.data,
                           device=args.device, report_only=args.report_only,
                           scales=(cfg.val_scale,), tolerance=TOLERANCES)


def summary(init: str, res: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """The committed record of one run (mIoU and IoU in per cent)."""
    cfg = config_of(init, args)
    run = Path(args.out) / cfg.run_name
    vals = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()
            if '"val"' in line]
    command = "python -m studies.camvid_imagenet.run --inits " + init + (
        " --set " + " ".join(shlex.quote(s) for s in args.set) if args.set else "")
    return {
        "model": args.model,
        "backbone_init": init,
        "test_miou": round(100 * res["miou"], 2),
        "per_class_iou": {name: round(100 * v, 2)
                          for name, v in zip(CamVid.classes, res["iou"], strict=True)},
        **{f"bf{t}": round(100 * res["mbf_at"][str(t)], 2) for t in TOLERANCES},
        "pixel_accuracy": round(100 * res["pixel_acc"], 2),
        "train_split": cfg.train_split,
        "lovasz_weight": cfg.lovasz_weight,
        "amp": cfg.amp,
        # on train + val the val frames were trained on: no held-out val score
        "best_val_miou": (round(100 * max(v["miou"] for v in vals), 2)
                          if vals and cfg.train_split == "train" else None),
        "iters": cfg.iters, "batch_size": cfg.batch_size, "crop_size": list(cfg.crop_size),
        "test_scale": cfg.val_scale,
        "train_hours": round(train_seconds(run / "log.jsonl", cfg.batch_size) / 3600, 2),
        "threads": torch.get_num_threads(),
        "command": command,
    }


def figure(inits: list[str], args: argparse.Namespace, path: Path) -> None:
    """Test frames: image, ground truth, then each run's prediction at the test scale."""
    segs = {}
    for init in inits:
        cfg = config_of(init, args)
        segs.update(load_runs({f"{args.model} ({init})": Path(args.out) / cfg.run_name},
                              args.device, scales=[cfg.val_scale]))
    rows = prediction_rows(CamVid(args.data, "test"), args.figure_frames, segs)
    save_grid(rows, path, cell=(2.6, 2.0), dpi=100)


def committed_rows(path: Path) -> dict[str, dict[str, Any]]:
    """The runs already recorded in ``path`` (the committed summary), by initialisation: run
    folders do not outlive a machine, the committed record does."""
    if not path.is_file():
        return {}
    record = json.loads(path.read_text())
    rows = {record["backbone_init"]: {k: v for k, v in record.items()
                                      if k not in (SAME_BUDGET, OTHER_BUDGET)}}
    for key in (OTHER_BUDGET, SAME_BUDGET):
        if key in record:
            rows["scratch"] = record[key]
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    runs = {init: run_one(init, args) for init in args.inits}
    done = {init: summary(init, res, args) for init, res in runs.items() if res is not None}
    if not done:
        print("no finished run yet", file=sys.stderr)
        return 1
    docs = Path(args.docs)
    path = docs / "results" / "camvid_imagenet.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    kept = {init: row for init, row in committed_rows(path).items() if init not in done}
    record = dict(done.get("imagenet") or kept.get("imagenet") or next(iter(done.values())))
    scratch = done.get("scratch") or kept.get("scratch")
    if scratch is not None and record.get("backbone_init") != "scratch":
        same = all(scratch.get(k) == record.get(k) for k in ("iters", "amp", "batch_size"))
        record[SAME_BUDGET if same else OTHER_BUDGET] = scratch
        if not same:
            print("the random-weights row is of another budget: run --inits scratch again")
    path.write_text(json.dumps(record, indent=2) + "\n")
    if kept:  # a run known only from the committed record: its checkpoint is not here
        print(f"kept the committed rows of {', '.join(kept)}; the figure is not redrawn")
    else:
        figure(list(done), args, docs / "camvid_imagenet_predictions.png")
    for init, row in done.items():
        thin = ", ".join(f"{k} {row['per_class_iou'][k]:.1f}"
                         for k in THIN)
        print(f"{init}: test mIoU {row['test_miou']:.2f} %, BF@2 {row['bf2']:.2f} %, {thin}, "
              f"{row['iters']} iterations, {row['train_hours']:.2f} h of training")
    return 0


if __name__ == "__main__":
    sys.exit(run_study(main))
