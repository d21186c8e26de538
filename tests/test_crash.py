"""Crash safety of training: SIGKILL at random moments, a full disk, NaN, SIGINT and SIGTERM.

Every run is a subprocess ``python -m rtseg train`` of a tiny model (one thread, no loader
workers unless said), compared bit for bit with an uninterrupted run made in this process.
``RTSEG_KILLS=50`` kills more often than the default.
"""

from __future__ import annotations

import json
import os
import random
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import rtseg
from rtseg.engine.checkpoint import load_checkpoint
from rtseg.errors import TrainingError

KILLS = int(os.environ.get("RTSEG_KILLS", "6"))
TINY = {"model": "fpn_r18_bilinear", "dataset": "synthetic", "synthetic_size": [32, 48],
        "crop_size": [32, 48], "synthetic_train_images": 8, "synthetic_val_images": 2,
        "batch_size": 4, "iters": 8, "eval_interval": 4, "ckpt_interval": 1,
        "log_interval": 1, "workers": 0}
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _argv(out: Path, name: str, **extra) -> list[str]:
    values = {**TINY, **extra, "out_dir": str(out), "run_name": name}
    return [sys.executable, "-m", "rtseg", "train"] + [
        f"{k}={json.dumps(v)}" for k, v in values.items()]


def _resume_argv(run: Path) -> list[str]:
    return [sys.executable, "-m", "rtseg", "train", "--resume", str(run)]


def _reference(out: Path, **extra) -> dict[str, torch.Tensor]:
    torch.set_num_threads(1)
    run = rtseg.train({**TINY, **extra}, out_dir=str(out), run_name="reference")
    return load_checkpoint(run / "last.pt")["model"]


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _train_rows(run: Path) -> list[int]:
    rows = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines() if x.strip()]
    return [r["iter"] for r in rows if r["kind"] == "train"]


def _wait(predicate, proc: subprocess.Popen, timeout: float = 120.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None:
        if predicate():
            return True
        time.sleep(0.005)
    return False


def test_sigkill_at_random_moments_then_resume_is_bit_identical(tmp_path):
    reference = _reference(tmp_path)
    run = tmp_path / "killed"
    rng = random.Random(0)
    kills = during_write = 0
    argv = _argv(tmp_path, "killed")
    while kills < KILLS:
        proc = subprocess.Popen(argv, env=ENV, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        argv = _resume_argv(run)
        if kills % 2 == 0:  # aim at a checkpoint write in progress
            hit = _wait(lambda: any(run.glob(".last.pt.*.tmp")), proc)
        else:  # or at a random moment of a step
            before = len(_train_rows(run)) if (run / "log.jsonl").is_file() else 0
            hit = _wait(lambda b=before: (run / "log.jsonl").is_file()
                        and len(_train_rows(run)) > b, proc)
            time.sleep(rng.uniform(0, 0.3))
        if proc.poll() is not None:  # finished before the kill: start over on a fresh run
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        during_write += hit and kills % 2 == 1
        if (run / "last.pt").is_file():
            load_checkpoint(run / "last.pt")  # never torn
    done = subprocess.run(_resume_argv(run), env=ENV, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    print(f"\n{kills} SIGKILLs survived ({during_write} while last.pt was being written)")
    assert kills >= KILLS // 2 and during_write >= 1
    assert _same(load_checkpoint(run / "last.pt")["model"], reference)
    assert _train_rows(run) == list(range(1, TINY["iters"] + 1))  # replayed rows dropped
    assert not list(run.glob(".*.tmp"))


def _limit_file_size() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))


def test_full_disk_while_saving_keeps_the_previous_checkpoint(tmp_path):
    rtseg.train({**TINY, "iters": 2}, out_dir=str(tmp_path), run_name="r")
    run = tmp_path / "r"
    before = load_checkpoint(run / "last.pt")
    proc = subprocess.run(_resume_argv(run) + ["iters=4"], env=ENV, capture_output=True,
                          text=True, preexec_fn=_limit_file_size)
    assert proc.returncode == 2, proc.stderr[-2000:]
    err = proc.stderr.strip().splitlines()[-1]
    assert err.startswith("rtseg train: error: ") and "last.pt: cannot write checkpoint" in err
    assert "the previous last.pt, if any, is unchanged" in err and "Traceback" not in proc.stderr
    after = load_checkpoint(run / "last.pt")
    assert after["iteration"] == 2 and _same(after["model"], before["model"])
    assert not list(run.glob(".*.tmp"))


def test_nan_loss_stops_with_the_iteration_and_never_saves_it(tmp_path):
    with pytest.raises(TrainingError, match=r"loss is (nan|inf) at iteration (\d+); stopped "
                                            r"without saving it") as info:
        rtseg.train({**TINY, "iters": 30, "lr": 1e12, "loss": "ce"}, out_dir=str(tmp_path),
                    run_name="nan")
    failed = int(info.value.args[0].split("iteration ")[1].split(";")[0])
    last = load_checkpoint(tmp_path / "nan" / "last.pt")
    assert last["iteration"] == failed - 1
    assert all(torch.isfinite(v).all() for v in last["model"].values() if v.is_floating_point())


@pytest.mark.parametrize("signum,workers", [(signal.SIGINT, 1), (signal.SIGTERM, 0)])
def test_sigint_and_sigterm_write_last_and_exit_cleanly(tmp_path, signum, workers):
    extra = {"iters": 12, "ckpt_interval": 100, "eval_interval": 100, "workers": workers}
    reference = _reference(tmp_path, **extra)
    run = tmp_path / "stopped"
    proc = subprocess.Popen(_argv(tmp_path, "stopped", **extra), env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    assert _wait(lambda: (run / "log.jsonl").is_file() and len(_train_rows(run)) >= 3, proc)
    os.killpg(proc.pid, signum)  # the whole group, as a Ctrl-C in a terminal
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, err[-2000:]
    assert "Traceback" not in err
    stopped = load_checkpoint(run / "last.pt")["iteration"]
    assert 3 <= stopped < 12
    assert f"stopped by {signal.Signals(signum).name} at iteration {stopped}" in err
    done = subprocess.run(_resume_argv(run), env=ENV, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert _same(load_checkpoint(run / "last.pt")["model"], reference)
