"""Timing: warm-up, timed calls one model after another or interleaved, and the statistics.

Each thing to time is an :class:`Item` whose ``run()`` is one synchronised forward pass. Its
first call (and the rest of the warm-up) is untimed; each timed call is ``time.perf_counter``
around ``run()``. With ``compare`` every item is warmed up first, then round r times one call
of each item in turn, starting at item r mod n, so that slow drifts of the machine hit all
alike. Latencies are summarised by their median and 10th/90th percentiles
(``numpy.percentile``, linear interpolation). Running out of memory turns an item into an
error row instead of stopping the run.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..errors import UsageError, first_line
from ..inference.peak_memory import peak_extra_bytes

Check = Callable[[Any], None]  # raises when the first call's output is wrong


@dataclass
class Item:
    """One thing to time: ``run()`` is one synchronised forward pass."""

    name: str
    run: Callable[[], Any] | None
    params: int
    macs: int  # per sample
    resident_bytes: int
    extra: dict = field(default_factory=dict)
    times: list[float] = field(default_factory=list)
    starts: list[float] = field(default_factory=list)
    first_call_s: float = float("nan")
    peak_extra: int | None = None
    error: str | None = None


Build = Callable[[str], tuple[Item, Check | None]]


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA); nothing on CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def latency(times: Sequence[float]) -> dict[str, float]:
    """Median, 10th and 90th percentile (linear interpolation, numpy's default) and mean."""
    p10, median, p90 = np.percentile(np.asarray(times, dtype=np.float64), [10, 50, 90])
    return {"p10": float(p10), "median": float(median), "p90": float(p90),
            "mean": float(np.mean(times))}


def _warm(item: Item, warmup: int, check: Check | None) -> None:
    t = time.perf_counter()
    y = item.run()
    item.first_call_s = time.perf_counter() - t
    if check is not None:
        check(y)
    del y
    for _ in range(warmup - 1):
        item.run()


def _time_once(item: Item, t0: float) -> None:
    start = time.perf_counter()
    item.run()
    end = time.perf_counter()
    item.times.append(end - start)
    item.starts.append(start - t0)


def _is_oom(e: BaseException) -> bool:
    """An out-of-memory failure (CUDA, or a CPU allocation the system refused)."""
    if isinstance(e, (MemoryError, getattr(torch, "OutOfMemoryError",
                                           torch.cuda.OutOfMemoryError))):
        return True
    text = str(e)
    return isinstance(e, RuntimeError) and ("out of memory" in text
                                            or "can't allocate memory" in text)


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _prepared(build: Build, name: str, warmup: int, device: torch.device) -> Item:
    """Build and warm up ``name`` and measure its memory; out of memory gives an error item."""
    try:
        item, check = build(name)
        _warm(item, warmup, check)
        item.peak_extra = peak_extra_bytes(item.run, device)
        return item
    except Exception as e:  # noqa: BLE001 - only out-of-memory is turned into a result
        if not _is_oom(e):
            raise
        error = f"out of memory ({type(e).__name__}: {first_line(e)[:160]})"
    # outside the except block, so the failed call's tensors can be freed
    _free(device)
    return Item(name, None, 0, 0, 0, error=error)


def _round_robin(items: Sequence[Item], iters: int, t0: float) -> None:
    """``iters`` rounds; round r times one call of each item in turn, starting at item r mod n."""
    for r in range(iters):
        for j in range(len(items)):
            _time_once(items[(r + j) % len(items)], t0)


def time_interleaved(fns: dict[str, Callable[[], Any]], warmup: int = 2,
                     iters: int = 10) -> dict[str, dict[str, float]]:
    """Time callables against each other, interleaved: the protocol of ``rtseg bench --compare``.

    Every callable is first called ``warmup`` times (untimed, one callable after the other);
    then round r times one call of each in turn, starting at callable r mod n, so that slow
    drifts of the machine (other jobs, clocks, temperature) hit all alike. Each call is timed
    with ``time.perf_counter``; a callable that queues work on a GPU must synchronise itself.

    Returns:
        ``{name: {"p10_ms", "median_ms", "p90_ms", "mean_ms"}}`` in milliseconds, in the order
        of ``fns`` (10th/90th percentile with linear interpolation, as :func:`latency`).

    Raises:
        UsageError: no callable, ``warmup`` < 0 or ``iters`` < 1.
    """
    if not fns:
        raise UsageError("time_interleaved: no callable to time")
    if warmup < 0 or iters < 1:
        raise UsageError(f"time_interleaved: warmup must be >= 0 and iters >= 1, got {warmup} "
                         f"and {iters}")
    items = [Item(name, fn, 0, 0, 0) for name, fn in fns.items()]
    for item in items:
        for _ in range(warmup):
            item.run()
    _round_robin(items, iters, time.perf_counter())
    return {item.name: {f"{k}_ms": v * 1e3 for k, v in latency(item.times).items()}
            for item in items}


def time_items(
    build: Build,
    names: Sequence[str],
    warmup: int,
    iters: int,
    compare: bool,
    device: torch.device,
    progress: Callable[[str], None] | None = None,
) -> list[Item]:
    """Build, warm up, measure memory and time every name; interleaved when ``compare``.

    A model that runs out of memory is reported with its error instead of stopping the run.
    """
    say = progress or (lambda s: None)
    t0 = time.perf_counter()
    done: list[Item] = []
    if compare:
        for name in names:
            done.append(_prepared(build, name, warmup, device))
            say(f"{name}: " + (done[-1].error or "ready"))
        _round_robin([item for item in done if item.error is None], iters, t0)
    else:
        for name in names:
            item = _prepared(build, name, warmup, device)
            if item.error is None:
                for _ in range(iters):
                    _time_once(item, t0)
            say(f"{name}: " + (item.error or
                               f"median {latency(item.times)['median'] * 1e3:.2f} ms"))
            item.run = None  # free the model before building the next one
            done.append(item)
            _free(device)
    for item in done:
        item.run = None
    return done


def result_rows(items: Sequence[Item], batch: int, reference: dict | None) -> list[dict]:
    """One result dict per item (see :func:`rtseg.bench.run_benchmark` for the fields)."""
    rows = []
    for item in items:
        if item.error is not None:
            rows.append({"name": item.name, "error": item.error})
            continue
        lat = latency(item.times)
        med = lat["median"]
        gflops = 2 * item.macs * batch / med / 1e9
        peak = (None if item.peak_extra is None
                else (item.peak_extra + item.resident_bytes) / 2**20)
        rows.append({
            "name": item.name,
            "error": None,
            "params_m": item.params / 1e6,
            "gmac": item.macs / 1e9,
            "median_ms": med * 1e3,
            "p10_ms": lat["p10"] * 1e3,
            "p90_ms": lat["p90"] * 1e3,
            "mean_ms": lat["mean"] * 1e3,
            "fps": batch / med,
            "gflops": gflops,
            "efficiency_pct": None if reference is None else 100 * gflops / reference["gflops"],
            "peak_mem_mb": peak,
            "first_call_ms": item.first_call_s * 1e3,
            **item.extra,
            "times_ms": [x * 1e3 for x in item.times],
            "starts_s": item.starts,
        })
    timed = [r for r in rows if r["error"] is None]
    fastest = min((r["median_ms"] for r in timed), default=float("nan"))
    for r in timed:
        r["relative"] = r["median_ms"] / fastest
    return rows


def add_floors(rows: list[dict], rate_name: str, base_name: str | None, batch: int) -> None:
    """Add ``floor_ms`` and ``over_floor`` to every timed row, in place.

    The floor is the latency a row's arithmetic would take at the rate the ``rate_name`` row
    (the bilinear baseline network) achieved in the same run: ``2·GMAC·batch / rate``. With a
    ``base_name`` row (the bilinear module in a module run) a module's floor is instead the
    base's measured latency plus its *extra* MACs over the base at that rate, i.e. what the
    module would cost if everything it adds ran as fast as the baseline network does. Rows are
    left as they are when the rate row is missing or failed.
    """
    rate = next((r for r in rows if r["name"] == rate_name and r["error"] is None), None)
    if rate is None:
        return
    base = next((r for r in rows if r["name"] == base_name and r["error"] is None), None)
    per_gmac_ms = 2 * batch / rate["gflops"] * 1e3
    for r in rows:
        if r["error"] is not None:
            continue
        if base is not None and r["name"] != rate_name and ":" not in r["name"]:
            r["floor_ms"] = base["median_ms"] + max(r["gmac"] - base["gmac"], 0) * per_gmac_ms
        else:  # the bare attention kernels (``attention:*``) and whole networks
            r["floor_ms"] = r["gmac"] * per_gmac_ms
        r["over_floor"] = r["median_ms"] / r["floor_ms"] if r["floor_ms"] > 0 else None


def matmul_reference(device: torch.device, n: int | None = None, repeats: int = 5) -> dict:
    """GFLOP/s of a plain fp32 n×n @ n×n product on ``device`` (median of ``repeats`` runs).

    Default n: 2048 on CPU (17 GFLOP per product), 8192 on CUDA. Runs outside autocast, so it
    is fp32 (TF32 on CUDA only when the run enabled it).
    """
    n = n or (8192 if device.type == "cuda" else 2048)
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=g).to(device)
    b = torch.randn(n, n, generator=g).to(device)
    times = []
    with torch.inference_mode():
        for _ in range(2):
            a @ b
        sync(device)
        for _ in range(repeats):
            t = time.perf_counter()
            a @ b
            sync(device)
            times.append(time.perf_counter() - t)
    med = latency(times)["median"]
    return {"n": n, "repeats": repeats, "median_ms": med * 1e3, "gflops": 2 * n**3 / med / 1e9}
