"""The entry points: :func:`run_benchmark` takes checked :class:`BenchSettings`, sets the
backend flags for the run, times the matmul reference and every case, and returns settings,
reference and rows."""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

from .. import layers
from ..errors import UsageError
from .cases import RATE_MODEL, Setup, build_model, build_module, rate_name
from .report import describe_settings
from .settings import BenchSettings
from .timing import add_floors, matmul_reference, result_rows, time_items


@contextlib.contextmanager
def _backend_flags(device: torch.device, tf32: bool, cudnn_benchmark: bool) -> Iterator[None]:
    """Set TF32 and cuDNN autotuning for the run (CUDA only) and restore them afterwards."""
    if device.type != "cuda":
        yield
        return
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
             torch.backends.cudnn.benchmark)
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = cudnn_benchmark
    try:
        yield
    finally:
        (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
         torch.backends.cudnn.benchmark) = saved


def run_benchmark(
    models: Sequence[str] = (),
    *,
    settings: BenchSettings | None = None,
    progress: Callable[[str], None] | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """Time models (or upsampler/attention modules) as ``settings`` say; see :mod:`rtseg.bench`.

    Args:
        settings: what to time and how (:class:`BenchSettings`, checked when made).
        progress: called with a line of text as each model is ready or timed.
        models, **kwargs: instead of ``settings``, its fields as keyword arguments (the
            ``BenchSettings`` is made from them): the old form, kept for one release.

    Returns:
        ``{"settings": {...}, "reference": {...} or None, "results": [row, ...]}``; a row has
        name, params_m, gmac (per sample), median_ms, p10_ms, p90_ms, mean_ms, fps, gflops,
        efficiency_pct, peak_mem_mb, first_call_ms, relative (median / fastest median),
        times_ms and starts_s (every timed call and when it started, for the record); models
        add bn_folded and bn_left. ``error`` is None, or the reason a model was not timed (out
        of memory; that row has no other fields and the run goes on). With ``floor``, rows get
        ``floor_ms`` and ``over_floor`` (see :func:`~rtseg.bench.timing.add_floors`): model
        runs that include ``fpn_r18_bilinear`` take its rate; module runs also time
        ``fpn_r18_bilinear`` on the input whose stride-4 feature is ``size`` for it.

    Raises:
        UnknownNameError, UsageError: see :class:`BenchSettings`; UsageError also when both
            ``settings`` and keyword settings are given.
    """
    if settings is None:
        if kwargs or models:
            warnings.warn("run_benchmark(models, **settings) is deprecated and will be removed "
                          "in the next release: pass settings=BenchSettings(...)",
                          DeprecationWarning, stacklevel=2)
        settings = BenchSettings(models, **kwargs)
    elif models or kwargs:
        raise UsageError("give settings=BenchSettings(...) or keyword settings, not both")
    return _run(settings, progress)


def _run(s: BenchSettings, progress: Callable[[str], None] | None) -> dict[str, Any]:
    dev, size, modules = s.device, s.size, s.kind == "modules"
    setup = Setup(dev, size, s.batch, s.precision, s.channels_last, s.compile, s.compile_mode,
                  s.argmax)
    build = (functools.partial(build_module, setup=setup, channels=s.channels) if modules else
             functools.partial(build_model, setup=setup, num_classes=s.num_classes,
                               fold_bn=s.fold_bn))
    saved_threads = torch.get_num_threads()
    if s.threads is not None:
        torch.set_num_threads(s.threads)
    try:
        with _backend_flags(dev, s.tf32, s.cudnn_benchmark):
            ref = matmul_reference(dev, s.reference_size) if s.reference else None
            if ref is not None and progress:
                progress(f"reference fp32 matmul {ref['n']}: {ref['gflops']:.1f} GFLOP/s")
            paths = layers.reference_paths() if s.reference_paths else contextlib.nullcontext()
            with paths:
                items = time_items(build, s.timed_names(), s.warmup, s.iters, s.compare, dev,
                                   progress)
            settings = describe_settings(
                dev, kind=s.kind, precision=s.precision, channels_last=s.channels_last,
                compile=s.compile, compile_mode=s.compile_mode, fold_bn=s.fold_bn,
                argmax=s.argmax, size=size, batch=s.batch, warmup=s.warmup, iters=s.iters,
                compare=s.compare, num_classes=s.num_classes,
                channels=s.channels if modules else None, tf32=s.tf32,
                cudnn_benchmark=s.cudnn_benchmark, reference_paths=s.reference_paths)
    finally:
        torch.set_num_threads(saved_threads)
    rows = result_rows(items, s.batch, ref)
    if s.floor:
        add_floors(rows, rate_name(size) if modules else RATE_MODEL,
                   "bilinear" if modules else None, s.batch)
    return {"settings": settings, "reference": ref, "results": rows}


def benchmark(models: Sequence[str], **kwargs: Any) -> list[dict]:
    """The result rows of one run: ``BenchSettings(models, **kwargs)`` (``progress`` apart),
    one dict per model."""
    progress = kwargs.pop("progress", None)
    return run_benchmark(settings=BenchSettings(models, **kwargs), progress=progress)["results"]
