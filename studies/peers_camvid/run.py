"""The real-time peers and the seed networks on CamVid from scratch, one recipe and budget
(issue 32, item 5): one queue of 17 runs, one seed each, resumable across sessions::

    python -m studies.peers_camvid.run --stop-after 120   # the next two hours of the queue
    python -m studies.peers_camvid.run                    # the whole queue (about a day)
    python -m studies.peers_camvid.run --models bisenetv2 bisenetv2+gum
    python -m studies.peers_camvid.run --report-only      # the docs block from the JSON alone
    python -m studies.peers_camvid.run --time-step        # s/step of each run's network

Queue (``report.JOBS``): the peers pidnet_s, ddrnet23_slim, bisenetv2, stdc1_seg with their
bilinear last step; the seed networks gain_r18, gain_df2, fanet18, gun, ifa_r18; then the peers
with ``model_kwargs={upsampler: gum}`` (``<peer>+gum``), then with ``dysample``.

Recipe: the probe's stage 1 (studies.common.STAGE1_CONFIG and stage1_recipe; docs/results.md,
"Stage 1: a working CamVid model on this CPU") with only the network changed: ``--iters`` (5000)
× batch 8 of random 240×320 crops, scale 0.5–2, flip, colour jitter, SGD lr 0.02, 200 warm-up
iterations, poly decay, weight decay 5e-4, OHEM 0.7 keeping 4800 pixels a crop, bf16 autocast,
validation every 500 iterations, best checkpoint on val, seed 0. Each network keeps its own
auxiliary losses and weights (``aux_kinds``, ``aux_weights``) and the ``model_kwargs`` of its
``configs/camvid/<model>.yaml`` (the architecture: gain_r18's CamVid network). ``--set
KEY=VALUE`` overrides any field of every run (last). Test: ``best.pt`` on the 233 test frames,
whole 480×360 frames at the recipe's eval scale (1): mIoU, per-class IoU, boundary F at 1/2/3
px, Boundary IoU (studies.common.train_then_test, cached in the run folder).

A finished run's record (scores, s/step, training hours, params, GMAC at 360×480, the command)
goes into ``docs/results/peers_camvid.json`` at once and the block of ``docs/results.md`` is
rewritten; a run already in the JSON is skipped; a run stopped in training resumes from its
``last.pt``. ``--stop-after MINUTES`` starts no run whose estimated time does not fit (a begun
one is resumed anyway), stops training after the current step with ``last.pt`` written when
the time is up, prints what is done and what remains, and exits 0 (studies.common.Budget).

Estimates: the median s/step recorded for the same network, else this run's ``--time-step``
measurement (saved in ``OUT/step_seconds.json``), else 1.0 s (stage 1's fpn_r18_bilinear, bf16,
2 cores); plus 5 min a run for validation, the test and set-up.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from rtseg.errors import UnknownNameError
from rtseg.training.config import TrainConfig, load_config
from studies.common import (
    ROOT,
    STAGE1_CONFIG,
    Budget,
    add_queue_options,
    finite,
    load_records,
    run_study,
    save_records,
    stage1_recipe,
    train_seconds,
)
from studies.peers_camvid.report import JOBS, NAMES, Job, merge_record, report, write_block

ITERS = 5000
TOLERANCES = (1, 2, 3)
SIZE = (360, 480)  # where params and GMAC are counted
S_PER_STEP = 1.0  # stage 1's s/iteration; recorded runs and --time-step replace it
EVAL_MINUTES = 5.0  # validation every 500 iterations, the test, set-up
STEP_FILE = "step_seconds.json"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=NAMES, metavar="RUN",
                   help="runs of the queue to do, by name: " + " ".join(NAMES))
    p.add_argument("--iters", type=int, default=ITERS)
    add_queue_options(p, "runs/peers_camvid")
    p.add_argument("--time-step", action="store_true",
                   help="time a training step of each run's network, save it, project; exit")
    return p.parse_args(argv)


def selected(args: argparse.Namespace) -> list[Job]:
    """The queue's runs named by ``--models``, in queue order; an unknown name is an error."""
    unknown = [n for n in args.models if n not in NAMES]
    if unknown:
        raise UnknownNameError(f"unknown run {', '.join(map(repr, unknown))} in --models; the "
                               f"queue's runs: {' '.join(NAMES)}")
    return [job for job in JOBS if job.name in args.models]


def model_kwargs(job: Job) -> dict[str, Any]:
    """The ``model_kwargs`` of the network's CamVid config, and a peer's upsampler."""
    path = ROOT / "configs" / "camvid" / f"{job.model}.yaml"
    own = (yaml.safe_load(path.read_text()) or {}).get("model_kwargs") if path.is_file() else None
    extra = {} if job.upsampler in (None, "bilinear") else {"upsampler": job.upsampler}
    return {**(own or {}), **extra}


def config_of(job: Job, args: argparse.Namespace) -> TrainConfig:
    """Stage 1's recipe with this run's network and fields; ``--set`` last."""
    fields = {**stage1_recipe(), "model": job.model, "model_kwargs": model_kwargs(job),
              "iters": args.iters, "eval_interval": 500, "ckpt_interval": 100, "seed": 0,
              "data_root": args.data, "out_dir": args.out, "run_name": job.name,
              "device": args.device}
    return load_config(STAGE1_CONFIG, [f"{k}={json.dumps(v)}" for k, v in fields.items()]
                       + list(args.set))


def command_of(job: Job, args: argparse.Namespace) -> str:
    extra = " --set " + " ".join(shlex.quote(s) for s in args.set) if args.set else ""
    return f"python -m studies.peers_camvid.run --models {job.name} --iters {args.iters}{extra}"


def record_of(job: Job, cfg: TrainConfig, res: dict[str, Any],
              args: argparse.Namespace) -> dict[str, Any]:
    """The committed record of a finished run (scores in per cent)."""
    import rtseg
    from rtseg.complexity import count_macs, count_params

    log = Path(cfg.out_dir) / cfg.run_name / "log.jsonl"
    seconds = train_seconds(log, cfg.batch_size) if log.is_file() else None
    model = rtseg.create_model(cfg.model, len(res["classes"]), **cfg.model_kwargs)
    return {"name": job.name, "model": job.model, "upsampler": job.upsampler,
            "model_kwargs": dict(cfg.model_kwargs), "seed": cfg.seed, "iters": cfg.iters,
            "batch_size": cfg.batch_size, "crop_size": list(cfg.crop_size),
            "aux_weights": list(cfg.aux_weights if cfg.aux_weights is not None
                                else model.aux_weights),
            "test_miou": finite(res["miou"]),
            "per_class_iou": {c: finite(v) for c, v in zip(res["classes"], res["iou"],
                                                           strict=True)},
            **{f"bf{t}": finite(res["mbf_at"][str(t)]) for t in TOLERANCES},
            "biou": finite(res["biou"]),
            "train_hours": None if seconds is None else round(seconds / 3600, 6),
            "s_per_step": None if seconds is None else round(seconds / cfg.iters, 3),
            "params": count_params(model),
            "gmac_360x480": round(count_macs(model, SIZE) / 1e9, 2),
            "command": command_of(job, args)}


def measured_steps(args: argparse.Namespace) -> dict[str, float]:
    """The s/step ``--time-step`` saved under ``--out`` ({} before it ran)."""
    path = Path(args.out) / STEP_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def estimate_minutes(job: Job, iters: int, records: list[dict],
                     measured: dict[str, float]) -> float:
    """A run's minutes: its steps at the network's recorded median s/step (else this run's
    measured one, else :data:`S_PER_STEP`), plus :data:`EVAL_MINUTES`."""
    rates = [r["s_per_step"] for r in records if r["model"] == job.model and r.get("s_per_step")]
    rate = statistics.median(rates) if rates else measured.get(job.name, S_PER_STEP)
    return iters * rate / 60 + EVAL_MINUTES


def json_path(args: argparse.Namespace) -> Path:
    return Path(args.docs) / "results" / "peers_camvid.json"


def stopped(why: str, args: argparse.Namespace, started: float) -> int:
    """Say what is done and what remains; the exit status of a clean stop (0)."""
    recorded = {r["name"] for r in load_records(json_path(args))}
    jobs = selected(args)
    left = [job.name for job in jobs if job.name not in recorded]
    print(f"{why} after {(time.monotonic() - started) / 60:.1f} min: {len(jobs) - len(left)} "
          f"runs of this queue recorded, {len(left)} remain"
          + (f": {', '.join(left)}" if left else "") + ". Re-run the same command to continue.")
    return 0


def write_report(args: argparse.Namespace, echo: bool = False) -> None:
    text = report(load_records(json_path(args)), args.iters)
    write_block(Path(args.docs) / "results.md", text)
    if echo:
        print(text)


def study(args: argparse.Namespace, budget: Budget) -> int:
    """Train, test and record every run of the queue that is not recorded yet."""
    started, path, measured = time.monotonic(), json_path(args), measured_steps(args)
    for job in selected(args):
        records = load_records(path)
        cfg = config_of(job, args)
        have = {r["name"]: r for r in records}
        if job.name in have:
            if have[job.name]["iters"] != cfg.iters:
                print(f"{job.name}: recorded with {have[job.name]['iters']} iterations, not "
                      f"{cfg.iters}: kept (delete its record to redo it)")
            continue
        res = budget.run(Path(cfg.out_dir) / cfg.run_name, cfg, job.name,
                         estimate_minutes(job, cfg.iters, records, measured),
                         device=args.device, tolerance=TOLERANCES)
        if isinstance(res, str):
            return stopped(res, args, started)
        record = record_of(job, cfg, res, args)
        save_records(path, merge_record(load_records(path), record))
        write_report(args)
        print(f"recorded {job.name}: test mIoU {record['test_miou']}, BF@2 {record['bf2']}, "
              f"BIoU {record['biou']}, {record['s_per_step']} s/step")
    if budget.spent:
        return stopped("budget spent", args, started)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    jobs = selected(args)
    if args.time_step:
        from studies.peers_camvid.timing import time_step

        time_step(jobs, args)
        return 0
    if args.report_only:
        write_report(args, echo=True)
        return 0
    budget = Budget(args.stop_after)
    with budget.armed():
        status = study(args, budget)
    write_report(args, echo=True)
    return status


if __name__ == "__main__":
    sys.exit(run_study(main))
