"""Every upsampler on an ImageNet backbone (issue 31): ``fpn_lite0_<up>`` on CamVid from
EfficientNet-Lite0's ImageNet weights, seeds paired, resumable across sessions::

    python -m studies.probe_imagenet.run --stop-after 120   # the next two hours of the queue
    python -m studies.probe_imagenet.run --report-only      # tables from the JSON alone
    python -m studies.probe_imagenet.run --report-only --figure   # + protocol B's crops
    python -m studies.probe_imagenet.run --time-step        # s/step of both protocols

Protocol A (``frozen``): every upsampler of rtseg.upsample but gai_nonlocal; the backbone frozen
at its ImageNet weights with its BN statistics (``freeze=backbone``), only the FPN head trained.
Learning rate 0.01: the rate the recipe trains the same head at from random weights in protocol
B, so that, warm-up aside, the protocols differ only in what happens to the backbone (the
from-scratch probe's decoder-only runs trained this head well at 0.02: 0.01 is in range).
Warm-up min(200, iters/10) instead of the recipe's 200: the warm-up shields ImageNet weights
from a random head's first gradients, and a frozen backbone needs no shield. Protocol B
(``finetune``): the recipe of ``configs/camvid/fpn_lite0_<up>.yaml`` as it is (crop 320, scale
1–3, batch 8, lr 0.01, warm-up 200, OHEM, NHWC, validation every 500 iterations and at the end)
for ``--finetune-upsamplers`` (bilinear gai gum) and the ``--finetune-best`` (2) others with the
best mean paired test-mIoU difference to bilinear under protocol A, chosen once every protocol-A
run of ``--seeds`` is recorded. Each run's best-on-val checkpoint is scored on the 233 test
frames at the recipe's eval scale 2: mIoU, per-class IoU, boundary F at 1/2/3 px, Boundary IoU.

Order: protocol A, then B; within each, seed-major (seed 0 of every upsampler, then seed 1, …),
so a partial study already holds complete pairs. A finished run's record goes into
``docs/results/probe_imagenet.json`` at once and the report block of ``docs/results.md`` is
rewritten; a run already in the JSON is skipped, so a new session continues the queue even when
``runs/`` is gone. A run stopped in training resumes from its ``last.pt`` when its folder is
still there. ``--stop-after MINUTES`` starts no run whose estimated time does not fit in what is
left (a begun run is resumed anyway), and when the time is up stops training after the current
step with ``last.pt`` written; it prints what is done and what remains and exits 0. SIGTERM or
SIGINT: ``last.pt`` written during training, one line, exit status 128 + the signal.

Budget (about 10–12 h of the 2-core CPU, in sessions of about 2 h of training), from the
measured steps (``--time-step``, quiet machine, 2026-12-01: frozen 0.73–1.11 s a step for
bilinear, GAI, fast attention, GUM, IFA, DySample; 3.80–5.12 s for CARAFE, FADE, SAPA, whose
training path was the gathered loop then; end to end 1.39–1.89 s) and about 4 min a run outside
the steps (the test, 168 s for 233 frames at 960×720; validation at 500 and at the end; set-up).

* A: 800 head-only iterations. A first 400-iteration run (bilinear, seed 0, 2026-12-01) ended at
  51.0 % test mIoU with the training loss still falling (2.42 at iteration 100, 2.24 at 300,
  1.91 at 380, under a decaying rate): at 400 the head is far from trained, and the table would
  compare how fast each head learns. 18 runs × (800 × 0.9 s + 4 min) ≈ 4.8 h, plus 9 runs of
  the CARAFE family at their training speed (≈ 2.6 h at 1 s a step, 8.6 h at the 4 s measured
  before their training path changed).
* B: 500 end-to-end iterations (the recipe's first validation point, a sixth of its 3000):
  5 models × 3 seeds × (500 × 1.65 s + 4 min) ≈ 4.4 h.

These are short budgets: the tables compare the upsamplers at them, not at convergence, and the
validation curve of each run is in its ``log.jsonl``.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from rtseg.training.config import load_config
from studies.common import (
    ROOT,
    Budget,
    add_queue_options,
    finite,
    load_records,
    run_study,
    save_records,
    train_seconds,
)
from studies.probe_imagenet.report import (
    PROTOCOLS,
    UPSAMPLERS,
    key_of,
    merge_record,
    paired_best,
    report,
    write_block,
)

TOLERANCES = (1, 2, 3)
FROZEN_LR = 0.01
S_PER_ITER = {"frozen": 0.9, "finetune": 1.65}  # --time-step medians; recorded runs replace them
EVAL_MINUTES = 4.0  # test, one validation, set-up
FINETUNE = ["bilinear", "gai", "gum"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--protocol", nargs="+", default=list(PROTOCOLS), choices=list(PROTOCOLS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--upsamplers", nargs="+", default=UPSAMPLERS, choices=UPSAMPLERS,
                   help="protocol A's (default: all)")
    p.add_argument("--finetune-upsamplers", nargs="+", default=FINETUNE, choices=UPSAMPLERS,
                   help="protocol B's fixed ones (default: bilinear gai gum)")
    p.add_argument("--finetune-best", type=int, default=2,
                   help="protocol B also trains this many best protocol-A upsamplers")
    p.add_argument("--frozen-iters", type=int, default=800)
    p.add_argument("--finetune-iters", type=int, default=500)
    add_queue_options(p, "runs/probe_imagenet")
    p.add_argument("--figure", action="store_true",
                   help="draw protocol B's boundary crops (needs its checkpoints here)")
    p.add_argument("--time-step", action="store_true",
                   help="time training steps of both protocols and project the hours; exit")
    return p.parse_args(argv)


def order(protocol: str, upsamplers: list[str], seeds: list[int]) -> list[tuple[str, str, int]]:
    """The runs of one protocol, seed-major: every upsampler of seed 0, then of seed 1, …"""
    return [(up, protocol, seed) for seed in seeds for up in upsamplers]


def finetune_choice(args: argparse.Namespace, records: list[dict]) -> tuple[list[str], str]:
    """Protocol B's upsamplers, and a note when the best of protocol A are not chosen yet."""
    fixed = list(dict.fromkeys(args.finetune_upsamplers))
    others = [u for u in args.upsamplers if u not in fixed and u != "bilinear"]
    if args.finetune_best <= 0 or not others:
        return fixed, ""
    done = {key_of(r) for r in records}
    missing = [k for k in order("frozen", ["bilinear", *others], args.seeds) if k not in done]
    if missing:
        return fixed, (f"Protocol B's {args.finetune_best} best protocol-A upsamplers are chosen "
                       f"when every protocol-A run of seeds {', '.join(map(str, args.seeds))} is "
                       "recorded "
                       f"({len(missing)} missing); until then protocol B runs "
                       f"{', '.join(fixed)}.")
    return fixed + paired_best(records, others, args.finetune_best), ""


def config_of(job: tuple[str, str, int], args: argparse.Namespace):
    """The recipe with this run's fields; ``--set`` last."""
    up, protocol, seed = job
    iters = args.frozen_iters if protocol == "frozen" else args.finetune_iters
    fields = [f"data_root={args.data}", f"out_dir={args.out}",
              f"run_name={protocol}_{up}_s{seed}", f"device={args.device}",
              "pretrained_backbone=imagenet", f"seed={seed}", f"iters={iters}"]
    if protocol == "frozen":
        fields += ["freeze=backbone", f"lr={FROZEN_LR}", f"warmup_iters={min(200, iters // 10)}"]
    return load_config(ROOT / "configs" / "camvid" / f"fpn_lite0_{up}.yaml", fields + args.set)


def command_of(job: tuple[str, str, int], args: argparse.Namespace) -> str:
    up, protocol, seed = job
    which = (f"--upsamplers {up} --frozen-iters {args.frozen_iters}" if protocol == "frozen" else
             f"--finetune-upsamplers {up} --finetune-best 0 "
             f"--finetune-iters {args.finetune_iters}")
    extra = " --set " + " ".join(shlex.quote(s) for s in args.set) if args.set else ""
    return (f"python -m studies.probe_imagenet.run --protocol {protocol} --seeds {seed} "
            f"{which}{extra}")


def record_of(job: tuple[str, str, int], cfg, res: dict[str, Any],
              args: argparse.Namespace) -> dict[str, Any]:
    """The committed record of a finished run (scores in per cent)."""
    up, protocol, seed = job
    log = Path(cfg.out_dir) / cfg.run_name / "log.jsonl"
    hours = train_seconds(log, cfg.batch_size) / 3600 if log.is_file() else None
    return {"upsampler": up, "protocol": protocol, "seed": seed, "model": cfg.model,
            "test_miou": finite(res["miou"]),
            **{f"bf{t}": finite(res["mbf_at"][str(t)]) for t in TOLERANCES},
            "biou": finite(res["biou"]),
            "per_class_iou": {c: finite(v) for c, v in zip(res["classes"], res["iou"],
                                                           strict=True)},
            "iters": cfg.iters, "train_hours": None if hours is None else round(hours, 3),
            "command": command_of(job, args)}


def estimate_minutes(protocol: str, iters: int, records: list[dict]) -> float:
    """A run's minutes: its steps at the protocol's recorded median s/iteration (the assumption
    until one is recorded), plus :data:`EVAL_MINUTES`."""
    rates = [3600 * r["train_hours"] / r["iters"] for r in records
             if r["protocol"] == protocol and r.get("train_hours") and r.get("iters")]
    rate = statistics.median(rates) if rates else S_PER_ITER[protocol]
    return iters * rate / 60 + EVAL_MINUTES


def remaining(args: argparse.Namespace, records: list[dict]) -> tuple[int, int, list[str]]:
    """Runs of this command's queue recorded, runs left, and the first of those left."""
    recorded = {key_of(r) for r in records}
    done, left, names = 0, 0, []
    for protocol in args.protocol:
        ups, note = ((args.upsamplers, "") if protocol == "frozen"
                     else finetune_choice(args, records))
        jobs = order(protocol, ups, args.seeds)
        done += sum(job in recorded for job in jobs)
        todo = [f"{p} {u} s{s}" for u, p, s in jobs if (u, p, s) not in recorded]
        left += len(todo) + (args.finetune_best * len(args.seeds) if note else 0)
        names += todo + ([f"finetune: the {args.finetune_best} best of protocol A × "
                          f"{len(args.seeds)} seeds"] if note else [])
    return done, left, names


def stopped(why: str, args: argparse.Namespace, started: float) -> int:
    """Say what is done and what remains; the exit status of a clean stop (0)."""
    done, left, names = remaining(args, load_records(json_path(args)))
    shown = ", ".join(names[:12]) + (", …" if len(names) > 12 else "")
    print(f"{why} after {(time.monotonic() - started) / 60:.1f} min: {done} runs of this "
          f"queue recorded, {left} remain" + (f": {shown}" if left else "")
          + ". Re-run the same command to continue.")
    return 0


def json_path(args: argparse.Namespace) -> Path:
    return Path(args.docs) / "results" / "probe_imagenet.json"


def write_report(args: argparse.Namespace, echo: bool = False) -> None:
    records = load_records(json_path(args))
    pending = finetune_choice(args, records)[1] if "finetune" in args.protocol else ""
    text = report(records, pending)
    write_block(Path(args.docs) / "results.md", text)
    if echo:
        print(text)


def study(args: argparse.Namespace, budget: Budget) -> int:
    started, path = time.monotonic(), json_path(args)
    for protocol in args.protocol:
        records = load_records(path)
        ups, note = ((args.upsamplers, "") if protocol == "frozen"
                     else finetune_choice(args, records))
        if note:
            print(note)
        for job in order(protocol, ups, args.seeds):
            records = load_records(path)
            cfg = config_of(job, args)
            have = {key_of(r): r for r in records}
            if job in have:
                if have[job]["iters"] != cfg.iters:
                    print(f"{' '.join(map(str, job))}: recorded with {have[job]['iters']} "
                          f"iterations, not {cfg.iters}: kept (delete its record to redo it)")
                continue
            res = budget.run(Path(cfg.out_dir) / cfg.run_name, cfg, cfg.run_name,
                             estimate_minutes(protocol, cfg.iters, records),
                             device=args.device, tolerance=TOLERANCES)
            if isinstance(res, str):
                return stopped(res, args, started)
            record = record_of(job, cfg, res, args)
            save_records(path, merge_record(load_records(path), record))
            write_report(args)
            print(f"recorded {cfg.run_name}: test mIoU {record['test_miou']}, BF@2 "
                  f"{record['bf2']}, BIoU {record['biou']}")
    if budget.spent:
        return stopped("budget spent", args, started)
    return 0


def figure(args: argparse.Namespace) -> None:
    """Protocol B's boundary crops, first seed, from the checkpoints that are here."""
    from studies.probe.figure import boundary_figure

    seed = args.seeds[0]
    ups = [r["upsampler"] for r in load_records(json_path(args))
           if r["protocol"] == "finetune" and r["seed"] == seed]
    have = [u for u in ups if (Path(args.out) / f"finetune_{u}_s{seed}" / "best.pt").is_file()]
    if not have:
        print(f"no protocol-B checkpoint of seed {seed} under {args.out}: no figure")
        return
    scale = config_of((have[0], "finetune", seed), args).val_scale
    path = Path(args.docs) / "probe_imagenet_boundary_crops.png"
    boundary_figure(argparse.Namespace(data=args.data, out=args.out, seeds=[seed],
                                       upsamplers=have, device=args.device),
                    path, prefix="finetune", scales=[scale])
    print(f"wrote {path}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.time_step:
        from studies.probe_imagenet.timing import time_step

        time_step(args)
        return 0
    if args.report_only:
        write_report(args, echo=True)
    else:
        budget = Budget(args.stop_after)
        with budget.armed():
            status = study(args, budget)
        write_report(args, echo=True)
        if status:
            return status
    if args.figure:
        figure(args)
    return 0


if __name__ == "__main__":
    sys.exit(run_study(main))
