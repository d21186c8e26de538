"""FANet +Temp against FANet on CamVid: same recipe, budget, seed and initialisation.

Both networks start from the same weights (``--init``: a CamVid checkpoint whose backbone
tensors match, e.g. the probe study's stage-1 ``best.pt``, copied with ``init_parts=backbone``;
or from scratch without it), train for ``--iters`` iterations on random 240×320 crops (``fanet18``
on single frames, ``fanet18_temp`` on clips of the frame and its two previous labelled frames
of the same drive, 1 s apart), and are evaluated on the 233 test frames (the temporal model on
test clips). Every run resumes (``OUT/<model>_s<seed>/last.pt``); finished runs are skipped::

    python -m studies.temporal.run --init runs/probe_camvid/stage1_fpn_r18_bilinear/best.pt
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import rtseg
from studies.common import CAMVID, ROOT, THIN, run_study, train_then_test

MODELS = ["fanet18", "fanet18_temp"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", default=str(CAMVID))
    p.add_argument("--out", default="runs/temporal_camvid")
    p.add_argument("--init", help="checkpoint whose backbone both models start from")
    p.add_argument("--iters", type=int, default=400)
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--crop", nargs=2, type=int, default=[240, 320])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--device", default="auto")
    return p.parse_args(argv)


def run_one(model: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """Train (or resume) one run, then score its best checkpoint on test; cached on disk."""
    run = Path(args.out) / f"{model}_s{seed}"

    def train(resume: Path | None) -> None:
        if resume:
            rtseg.train(resume=resume)
            return
        h, w = args.crop
        extra = {"init_from": args.init, "init_parts": "backbone"} if args.init else {}
        rtseg.train(ROOT / "configs" / "camvid" / f"{model}.yaml", data_root=args.data,
                    iters=args.iters, crop_size=[h, w], batch_size=args.batch, seed=seed,
                    workers=args.workers, device=args.device, amp=True,
                    eval_interval=max(args.iters // 4, 1), ckpt_interval=50, log_interval=10,
                    warmup_iters=min(100, args.iters // 10), ohem_min_kept=h * w // 16,
                    out_dir=args.out, run_name=run.name, **extra)

    return train_then_test(run, train, data=args.data, device=args.device, tolerance=(2,))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    lines = ["| model | seed | test mIoU | boundary F (2 px) | " + " | ".join(THIN) + " |",
             "|---|---|---|---|" + "---|" * len(THIN)]
    for seed in args.seeds:
        for model in MODELS:
            r = run_one(model, seed, args)
            ious = [r["iou"][r["classes"].index(c)] for c in THIN]
            lines.append(f"| {model} | {seed} | {100 * r['miou']:.1f} | {100 * r['mbf']:.1f} | "
                         + " | ".join(f"{100 * v:.1f}" for v in ious) + " |")
    text = "\n".join(lines) + "\n"
    (Path(args.out) / "results.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(run_study(main))
