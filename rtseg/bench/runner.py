"""The entry points: :func:`run_benchmark` checks its arguments, sets the backend flags for the
run, times the matmul reference and every case, and returns settings, reference and rows."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

from .. import layers
from ..errors import UnknownNameError, UsageError
from ..registry import list_models
from ..utils import PRECISIONS, resolve_device
from .cases import MODULES, RATE_MODEL, Setup, build_model, build_module, rate_name
from .report import describe_settings
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


def _check_names(names: Sequence[str], valid: Sequence[str], what: str) -> list[str]:
    """``names`` without repeats, ``all`` expanded to ``valid``; an unknown or no name raises."""
    out: list[str] = []
    for n in names:
        if n == "all":
            out += [v for v in valid if v not in out]
        elif n not in valid:
            raise UnknownNameError(
                f"unknown {what} {n!r}; available: {', '.join(valid)} (or 'all')")
        elif n not in out:
            out.append(n)
    if not out:
        raise UsageError(f"no {what} given; name one or more of: {', '.join(valid)} (or 'all')")
    return out


def _with_backends(names: list[str], backends: Sequence[str], modules: Sequence[str],
                   device: torch.device, precision: str, torch_only: bool) -> list[str]:
    """Model names with ``@backend`` for every runtime other than torch (checked)."""
    from ..deploy.runtimes import require

    backends = list(dict.fromkeys(backends)) or ["torch"]
    for b in backends:
        require(b)
    exported = [b for b in backends if b != "torch"]
    if exported and (modules or device.type != "cpu" or precision != "fp32" or torch_only):
        raise UsageError(f"--backend {','.join(exported)} times whole models in fp32 on the "
                         "CPU, without --channels-last, --compile or --fold-bn")
    return [n if b == "torch" else f"{n}@{b}" for n in names for b in backends]


def run_benchmark(
    models: Sequence[str] = (),
    size: tuple[int, int] | None = None,
    batch: int = 1,
    device: str | torch.device = "auto",
    precision: str = "fp32",
    channels_last: bool = False,
    compile: bool = False,
    fold_bn: bool = False,
    argmax: bool = False,
    warmup: int | None = None,
    iters: int | None = None,
    compare: bool = False,
    threads: int | None = None,
    num_classes: int = 19,
    modules: Sequence[str] = (),
    channels: int = 128,
    reference: bool = True,
    reference_size: int | None = None,
    tf32: bool = False,
    cudnn_benchmark: bool = True,
    compile_mode: str | None = None,
    progress: Callable[[str], None] | None = None,
    backends: Sequence[str] = ("torch",),
    floor: bool = True,
    reference_paths: bool = False,
) -> dict[str, Any]:
    """Time models (or, with ``modules``, upsampler/attention modules); see :mod:`rtseg.bench`.

    Args:
        models: registered model names (or "all"), each run on a ``batch``×3×H×W input.
        size: (H, W): the input size (models, default 1024×2048) or the feature size of the
            module micro benchmark (default 128×256, stride 8 of 1024×2048).
        modules: instead of models, names from :data:`MODULES`: pairwise upsamplers
            (``create_upsampler(name, C, C, C)`` on coarse B×C×⌈H/2⌉×⌈W/2⌉ and fine B×C×H×W),
            ``ifa`` (levels H×W … H/8×W/8, output H×W) or a bare attention kernel on
            B×d×H×W queries/keys and B×c×H×W values (``attention:fast``: d = 32, c = C;
            ``attention:criss_cross``/``attention:nonlocal``: GAI's d = C/16, c = C/2).
        channels: C of the module micro benchmark.
        warmup, iters: untimed and timed calls per model (defaults: 10/50 on CUDA, 2/10 on CPU).
        compare: interleave the timed calls of all models (round robin).
        threads: ``torch.set_num_threads`` for the run (restored afterwards).
        reference: time the fp32 matmul reference (``reference_size``, see
            :func:`matmul_reference`) for the efficiency column.
        tf32: allow TF32 in cuDNN convolutions and CUDA matmuls (off: "fp32" is true fp32).
        cudnn_benchmark: cuDNN autotuning (CUDA).
        backends: run every model in each of these: ``torch`` (eager), ``onnxruntime`` or
            ``openvino`` (its static ONNX export at the run's batch and size, fp32, the run's
            thread count); with ``compare`` all of them interleaved in one run.
        floor: give every row a floor (``floor_ms``, ``over_floor``; see
            :func:`~rtseg.bench.timing.add_floors`): model runs that include
            ``fpn_r18_bilinear`` take its rate; module runs also time ``fpn_r18_bilinear`` on
            the input whose stride-4 feature is ``size`` (interleaved like the rest) for it.
        reference_paths: run the upsamplers' plain formulas instead of their inference fast
            paths (:func:`rtseg.layers.reference_paths`): the "before" of every speed-up.

    Returns:
        ``{"settings": {...}, "reference": {...} or None, "results": [row, ...]}``; a row has
        name, params_m, gmac (per sample), median_ms, p10_ms, p90_ms, mean_ms, fps, gflops,
        efficiency_pct, peak_mem_mb, first_call_ms, relative (median / fastest median),
        times_ms and starts_s (every timed call and when it started, for the record); models
        add bn_folded and bn_left. ``error`` is None, or the reason a model was not timed (out
        of memory; that row has no other fields and the run goes on).

    Raises:
        UnknownNameError: an unknown model or module name.
        UsageError: any other argument the run cannot honour (both or neither of models and
            modules, a bad size, CUDA where there is none, a precision the device cannot run).
    """
    if bool(models) == bool(modules):
        raise UsageError("give model names or --module names (not both, not neither)")
    if precision not in PRECISIONS:
        raise UsageError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    dev = resolve_device(device)
    cuda = dev.type == "cuda"
    warmup = (10 if cuda else 2) if warmup is None else warmup
    iters = (50 if cuda else 10) if iters is None else iters
    if warmup < 1 or iters < 1 or batch < 1:
        raise UsageError("warmup, iters and batch must be >= 1 (the first call is never timed)")
    kind = "modules" if modules else "models"
    names = (_check_names(modules, MODULES, "module") if modules
             else _check_names(models, list_models(), "model"))
    names = _with_backends(names, backends, modules, dev, precision,
                           channels_last or compile or fold_bn)
    size = tuple(size or ((128, 256) if modules else (1024, 2048)))
    if len(size) != 2 or min(size) < 1:
        raise UsageError(f"size must be two positive integers (H W), got {size}")
    if threads is not None and threads < 1:
        raise UsageError(f"threads must be >= 1, got {threads}")
    if modules and floor:
        names.append(rate_name(size))
    setup = Setup(dev, size, batch, precision, channels_last, compile, compile_mode, argmax)
    build = (functools.partial(build_module, setup=setup, channels=channels) if modules else
             functools.partial(build_model, setup=setup, num_classes=num_classes, fold_bn=fold_bn))
    saved_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        with _backend_flags(dev, tf32, cudnn_benchmark):
            ref = matmul_reference(dev, reference_size) if reference else None
            if ref is not None and progress:
                progress(f"reference fp32 matmul {ref['n']}: {ref['gflops']:.1f} GFLOP/s")
            paths = layers.reference_paths() if reference_paths else contextlib.nullcontext()
            with paths:
                items = time_items(build, names, warmup, iters, compare, dev, progress)
            settings = describe_settings(
                dev, kind=kind, precision=precision, channels_last=channels_last,
                compile=compile, compile_mode=compile_mode, fold_bn=fold_bn, argmax=argmax,
                size=size, batch=batch, warmup=warmup, iters=iters, compare=compare,
                num_classes=num_classes, channels=channels if modules else None, tf32=tf32,
                cudnn_benchmark=cudnn_benchmark, reference_paths=reference_paths)
    finally:
        torch.set_num_threads(saved_threads)
    rows = result_rows(items, batch, ref)
    if floor:
        add_floors(rows, rate_name(size) if modules else RATE_MODEL,
                   "bilinear" if modules else None, batch)
    return {"settings": settings, "reference": ref, "results": rows}


def benchmark(models: Sequence[str], **kwargs: Any) -> list[dict]:
    """The result rows of :func:`run_benchmark` (same arguments), one dict per model."""
    return run_benchmark(models, **kwargs)["results"]
