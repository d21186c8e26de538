"""Crash safety of training: SIGKILL at random moments, a full disk, NaN, SIGINT and SIGTERM.

Every run is a subprocess ``rtseg train`` of a tiny model (one thread, no loader workers unless
said), compared bit for bit with an uninterrupted run made in this process. Where a signal must
land at a given point (inside a checkpoint write, after a given step), the subprocess pauses
there and says so through a file, so the outcome never depends on the machine's load.
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
from rtseg.errors import TrainingError
from rtseg.training.checkpoint import load_checkpoint

KILLS = int(os.environ.get("RTSEG_KILLS", "6"))
TINY = {"model": "fpn_r18_bilinear", "dataset": "synthetic", "crop_size": [32, 48],
        "dataset_kwargs": {"size": [32, 48], "num_images": dict(train=8, val=2, test=2)},
        "batch_size": 4, "iters": 8, "eval_interval": 4, "ckpt_interval": 1,
        "log_interval": 1, "workers": 0}
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


# ``python -c _PAUSING save N MARKER GO rtseg-args…``: in the N-th checkpoint write, after half
# of its bytes; ``row N``: after logging training row N. It touches MARKER there and waits for
# the file GO to exist.
_PAUSING = """
import io, sys, time
from pathlib import Path
import torch
from rtseg.cli import main
from rtseg.training.runlog import RunLog
where, n, marker, go = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4])
def pause():
    marker.touch()
    while not go.exists():
        time.sleep(0.01)
real_save, real_write, saves = torch.save, RunLog.write, [0]
def save(obj, f, *args, **kw):
    saves[0] += 1
    if saves[0] != n:
        return real_save(obj, f, *args, **kw)
    buf = io.BytesIO()
    real_save(obj, buf, *args, **kw)
    data = buf.getvalue()
    f.write(data[: len(data) // 2])
    f.flush()
    pause()
    f.write(data[len(data) // 2:])
def write(self, kind, it, **values):
    real_write(self, kind, it, **values)
    if kind == "train" and it == n:
        pause()
if where == "save":
    torch.save = save
else:
    RunLog.write = write
sys.exit(main(sys.argv[5:]))
"""


def _train_args(out: Path, name: str, **extra) -> list[str]:
    values = {**TINY, **extra, "out_dir": str(out), "run_name": name}
    return ["train"] + [f"{k}={json.dumps(v)}" for k, v in values.items()]


def _resume_argv(run: Path) -> list[str]:
    return [sys.executable, "-m", "rtseg", "train", "--resume", str(run)]


def _pausing(where: str, n: int, marker: Path, go: Path, args: list[str]) -> list[str]:
    """argv of a run that pauses at ``where`` ``n`` (see ``_PAUSING``) until ``go`` exists."""
    return [sys.executable, "-c", _PAUSING, where, str(n), str(marker), str(go), *args]


def _reference(out: Path, **extra) -> dict[str, torch.Tensor]:
    torch.set_num_threads(1)
    run = rtseg.train({**TINY, **extra}, out_dir=str(out), run_name="reference")
    return load_checkpoint(run / "last.pt")["model"]


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _train_rows(run: Path) -> list[int]:
    rows = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines() if x.strip()]
    return [r["iter"] for r in rows if r["kind"] == "train"]


def _wait(predicate, proc: subprocess.Popen, timeout: float = 600.0) -> bool:
    """Whether ``predicate`` came true while ``proc`` ran (the timeout only guards a hang)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None:
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()


def test_sigkill_at_random_moments_then_resume_is_bit_identical(tmp_path):
    reference = _reference(tmp_path)
    run = tmp_path / "killed"
    rng = random.Random(0)
    marker, never = tmp_path / "paused", tmp_path / "never"
    args = _train_args(tmp_path, "killed")
    # First half: killed inside a checkpoint write (the 1st or 2nd of the process), a torn
    # temporary file left behind; at most one step is gained per two kills, so the run
    # cannot end in this half before 2 × iters kills.
    during_write = 0
    for i in range(KILLS // 2):
        marker.unlink(missing_ok=True)
        proc = subprocess.Popen(_pausing("save", 1 + i % 2, marker, never, args), env=ENV,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        args = ["train", "--resume", str(run)]
        if not _wait(marker.exists, proc):
            break  # the run ended before that write (only with a large RTSEG_KILLS)
        assert list(run.glob(".*.pt.*.tmp")), "paused inside a write, yet no temporary file"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        during_write += 1
        if (run / "last.pt").is_file():
            load_checkpoint(run / "last.pt")  # never torn
    assert during_write >= min(KILLS // 2, 2 * TINY["iters"])
    # Second half: killed at a random moment of a step; the run may end before a kill.
    random_kills = 0
    for _ in range(KILLS - KILLS // 2):
        proc = subprocess.Popen(_resume_argv(run), env=ENV, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        before = len(_train_rows(run)) if (run / "log.jsonl").is_file() else 0
        _wait(lambda b=before: (run / "log.jsonl").is_file() and len(_train_rows(run)) > b,
              proc)
        time.sleep(rng.uniform(0, 0.3))
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        random_kills += 1
        if (run / "last.pt").is_file():
            load_checkpoint(run / "last.pt")
    done = subprocess.run(_resume_argv(run), env=ENV, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    print(f"\n{during_write} SIGKILLs inside a checkpoint write and {random_kills} at random "
          "moments survived")
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
    marker, go = tmp_path / "paused", tmp_path / "go"
    proc = subprocess.Popen(_pausing("row", 3, marker, go,
                                     _train_args(tmp_path, "stopped", **extra)),
                            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    assert _wait(marker.exists, proc)  # paused after logging step 3
    os.killpg(proc.pid, signum)  # the whole group, as a Ctrl-C in a terminal
    go.touch()
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 128 + signum, err[-2000:]
    assert "Traceback" not in err
    stopped = load_checkpoint(run / "last.pt")["iteration"]
    assert stopped == 4  # the flag is read after the step in progress, the 4th
    assert f"stopped by {signal.Signals(signum).name} at iteration {stopped}" in err
    done = subprocess.run(_resume_argv(run), env=ENV, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert _same(load_checkpoint(run / "last.pt")["model"], reference)
