"""Inference speed: ``rtseg bench``, one protocol for every model.

Protocol (the same for every model, so the numbers compare):

* ``create_model(name, K, aux=False)`` in eval mode, run under ``torch.inference_mode()`` on a
  random ``batch``×3×H×W input; the output is B×K×H×W logits, i.e. the final upsampling to the
  input size is always included (the models do it). ``argmax=True`` adds the B×H×W label map.
* Optional, and then for every model alike: BatchNorm folded into the preceding convolutions
  (:func:`fold_batchnorm`), autocast to fp16/bf16, channels-last memory format, ``torch.compile``.
* ``warmup`` untimed calls (at least one: allocation, cuDNN autotuning and compilation happen
  there), then ``iters`` timed calls. Each call is timed with ``time.perf_counter`` around the
  forward pass followed, on CUDA, by ``torch.cuda.synchronize()``, so every time is the full
  latency of one batch. Reported: median, 10th and 90th percentile latency, FPS =
  batch / median, parameters, GMAC per image (:func:`rtseg.complexity.count_macs`: convolutions
  and matrix/attention products), achieved GFLOP/s = 2·MAC·batch / median, and that as a
  percentage of a plain fp32 matrix product timed on the same device in the same run.
* ``compare=True`` times several models in one run, interleaved: after every model's warm-up,
  round r times one call of each model in turn (starting at model r mod n), so that slow
  drifts of the machine (other jobs, clocks, temperature) hit all models alike.

Peak memory (``peak_mem_mb``) is what one forward pass needs on its own: the model's weights and
buffers, the input, and the largest extra memory during one call. On CUDA the extra is
``torch.cuda.max_memory_allocated`` minus the memory allocated before the call (exact for the
caching allocator's tensors; cuDNN/cuBLAS workspaces outside it are not counted). On CPU there
is no allocator statistic; the extra is the rise of the process's peak resident set size over
one call, after freeing the C heap (``malloc_trim``) and resetting the peak through
``/proc/self/clear_refs`` (Linux). That figure is approximate (it also sees allocator caching,
and library buffers touched for the first time); where the reset is not possible it is
reported as ``None`` ("n/a") rather than guessed.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import ctypes
import gc
import json
import math
import platform
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

from .complexity import count_call_macs, count_macs, count_params
from .registry import create_model, list_models
from .upsample import (
    IFA,
    PAIRWISE,
    create_upsampler,
    criss_cross_attention,
    fast_attention,
    nonlocal_attention,
)

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
ATTENTIONS = ("attention:fast", "attention:criss_cross", "attention:nonlocal")
MODULES = (*PAIRWISE, "ifa", *ATTENTIONS)


# --------------------------------------------------------------------------------------------
# BatchNorm folding


class _UseCounter(TorchFunctionMode):
    """Counts the torch calls that read each watched tensor and return tensors.

    ``watched`` maps ``id(tensor)`` of live tensors (kept alive by the caller, so that an id
    cannot be reused meanwhile) to anything; other tensors are ignored. Metadata queries
    (``x.shape``, ``x.dim()``) return no tensor and are not counted.
    """

    def __init__(self, watched: dict[int, Any]) -> None:
        super().__init__()
        self.watched = watched
        self.uses: Counter[int] = Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if any(isinstance(o, torch.Tensor) for o in tree_flatten(out)[0]):
            for t in tree_flatten((args, kwargs))[0]:
                if isinstance(t, torch.Tensor) and id(t) in self.watched:
                    self.uses[id(t)] += 1
        return out


def _conv_bn_pairs(model: nn.Module, example: torch.Tensor) -> list[tuple[str, str]]:
    """(conv name, BN name) pairs where the BN reads the conv's output and nothing else does.

    Found by running ``model`` once on ``example``: a pair qualifies when every call of the BN
    receives a tensor produced by that same ``nn.Conv2d``, every output of that conv goes to
    that BN, and no other torch call reads those outputs (a conv output that also feeds a
    residual branch is never folded). Works on any control flow, which ``torch.fx`` cannot
    trace here (shape-dependent branches).
    """
    names = {m: n for n, m in model.named_modules()}
    produced: dict[int, nn.Module] = {}  # id(conv output) → conv
    outputs: dict[nn.Module, list[int]] = {}
    bn_inputs: dict[nn.Module, list[int]] = {}
    keep: list[torch.Tensor] = []  # keeps ids unique during the pass

    def conv_hook(mod: nn.Module, args: tuple, out: torch.Tensor) -> None:
        keep.append(out)
        produced[id(out)] = mod
        outputs.setdefault(mod, []).append(id(out))

    def bn_hook(mod: nn.Module, args: tuple) -> None:
        keep.append(args[0])
        bn_inputs.setdefault(mod, []).append(id(args[0]))

    handles = []
    for m in names:
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.BatchNorm2d):
            handles.append(m.register_forward_pre_hook(bn_hook))
    counter = _UseCounter(produced)
    try:
        with torch.no_grad(), counter:
            model(example)
    finally:
        for h in handles:
            h.remove()
    pairs = []
    for bn, ids in bn_inputs.items():
        convs = {produced.get(i) for i in ids}
        if len(convs) != 1 or None in convs:
            continue
        conv = convs.pop()
        if (set(outputs[conv]) == set(ids) and all(counter.uses[i] == 1 for i in ids)
                and conv.out_channels == bn.num_features and bn.running_mean is not None):
            pairs.append((names[conv], names[bn]))
    return pairs


def _fold_into(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    """``conv`` := BN ∘ conv in place (eval statistics, float64 arithmetic)."""
    scale = bn.running_var.double().add(bn.eps).rsqrt()
    if bn.weight is not None:
        scale = scale * bn.weight.double()
    shift = -bn.running_mean.double() * scale
    if bn.bias is not None:
        shift = shift + bn.bias.double()
    bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(shift)
    w = conv.weight.double() * scale.view(-1, *([1] * (conv.weight.dim() - 1)))
    conv.weight = nn.Parameter(w.to(conv.weight.dtype), requires_grad=False)
    conv.bias = nn.Parameter((bias * scale + shift).to(conv.weight.dtype), requires_grad=False)


def count_bn(model: nn.Module) -> int:
    """Number of ``nn.BatchNorm2d`` modules in ``model``."""
    return sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())


@torch.no_grad()
def fold_batchnorm(
    model: nn.Module,
    example: torch.Tensor | None = None,
    check: bool = True,
    tol: float = 1e-4,
) -> nn.Module:
    """A copy of ``model`` (eval mode) with every BatchNorm2d folded into the conv before it.

    For each pair found by running the model once on ``example`` (default: a random 1×3×64×64
    tensor on the model's device), the conv gets ``W' = W·s``, ``b' = (b − μ)·s + β`` with
    ``s = γ/√(σ² + ε)`` (computed in float64) and the BN becomes ``nn.Identity``. A BatchNorm
    that does not directly follow a conv whose output only it reads is left in place
    (:func:`count_bn` on the result tells how many remain).

    Args:
        model: a module taking one B×3×H×W tensor; it is not modified.
        example: input of the discovery pass and of the check.
        check: compare the folded copy with ``model`` on ``example`` and raise RuntimeError
            when the largest difference exceeds ``tol·max(1, max|output|)``.

    Returns:
        The folded copy, in eval mode.
    """
    model = model.eval()
    folded = copy.deepcopy(model)
    if example is None:
        p = next(model.parameters(), None)
        example = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
        example = example.to(p.device if p is not None else "cpu")
    pairs = _conv_bn_pairs(folded, example)
    bns = [folded.get_submodule(b) for _, b in pairs]
    for (conv_name, _), bn in zip(pairs, bns, strict=True):
        _fold_into(folded.get_submodule(conv_name), bn)
    # IFA computes its first layer from ``first``'s weight blocks without calling it (the
    # precomputed path), so the discovery pass cannot see that ``rest[0]`` follows it; the
    # layer is linear in those weights, so the BN folds into ``first`` all the same.
    for m in folded.modules():
        if (isinstance(m, IFA) and isinstance(m.rest[0], nn.BatchNorm2d)
                and not any(m.rest[0] is bn for bn in bns)):
            _fold_into(m.first, m.rest[0])
            bns.append(m.rest[0])
    gone = {id(bn) for bn in bns}
    for parent in list(folded.modules()):
        for child_name, child in list(parent.named_children()):
            if id(child) in gone:  # every place the BN is registered
                setattr(parent, child_name, nn.Identity())
    if check:
        ref, out = model(example), folded(example)
        err = (ref - out).abs().max().item()
        if not err <= tol * max(1.0, ref.abs().max().item()):
            raise RuntimeError(f"BN folding changed the output by {err:.3g} (tolerance {tol} "
                               "relative to the output scale); not folding this model")
    return folded.eval()


# --------------------------------------------------------------------------------------------
# devices, settings, reference


def resolve_device(name: str) -> torch.device:
    """'auto' (CUDA when available, else CPU), 'cpu', 'cuda' or 'cuda:N'; checked."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown device {name!r}; use auto, cpu or cuda[:N]") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda requested but CUDA is not available "
                         f"(torch {torch.__version__}); use --device cpu")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device {name!r} is not supported by rtseg bench; use cpu or cuda")
    return device


def device_name(device: torch.device) -> str:
    """Human-readable name of the device (GPU model, or the CPU model from /proc/cpuinfo)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    with contextlib.suppress(OSError):
        m = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        if m:
            return m.group(1).strip()
    return platform.processor() or platform.machine() or "cpu"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


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
        _sync(device)
        for _ in range(repeats):
            t = time.perf_counter()
            a @ b
            _sync(device)
            times.append(time.perf_counter() - t)
    med = _percentile(sorted(times), 50)
    return {"n": n, "repeats": repeats, "median_ms": med * 1e3, "gflops": 2 * n**3 / med / 1e9}


def _percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolation percentile (numpy's default) of an ascending sequence."""
    pos = (len(sorted_values) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


# --------------------------------------------------------------------------------------------
# memory


def _status_kb(field_name: str) -> int | None:
    with contextlib.suppress(OSError):
        m = re.search(rf"^{field_name}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M)
        if m:
            return int(m.group(1))
    return None


def _malloc_trim() -> None:
    with contextlib.suppress(Exception):
        ctypes.CDLL(None).malloc_trim(0)


def _peak_extra_bytes(run: Callable[[], Any], device: torch.device) -> int | None:
    """Largest extra memory during one ``run()`` (see the module docstring), or None."""
    gc.collect()
    if device.type == "cuda":
        _sync(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        y = run()
        peak = torch.cuda.max_memory_allocated(device)
        del y
        return peak - before
    _malloc_trim()
    rss = _status_kb("VmRSS")
    try:
        Path("/proc/self/clear_refs").write_text("5")  # peak RSS := current RSS (Linux ≥ 4.0)
    except OSError:
        return None
    hwm = _status_kb("VmHWM")
    if rss is None or hwm is None or hwm > rss * 1.05 + 1024:  # the reset did not happen
        return None
    rss = min(rss, hwm)
    y = run()
    hwm = _status_kb("VmHWM")
    del y
    return None if hwm is None else max(hwm - rss, 0) * 1024


def _tensor_bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


# --------------------------------------------------------------------------------------------
# timing


@dataclass
class _Item:
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


def _warm(item: _Item, warmup: int, check: Callable[[Any], None] | None) -> None:
    t = time.perf_counter()
    y = item.run()
    item.first_call_s = time.perf_counter() - t
    if check is not None:
        check(y)
    del y
    for _ in range(warmup - 1):
        item.run()


def _time_once(item: _Item, t0: float) -> None:
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


def _prepared(
    build: Callable[[str], tuple[_Item, Callable[[Any], None] | None]],
    name: str,
    warmup: int,
    device: torch.device,
) -> _Item:
    """Build and warm up ``name`` and measure its memory; out of memory gives an error item."""
    try:
        item, check = build(name)
        _warm(item, warmup, check)
        item.peak_extra = _peak_extra_bytes(item.run, device)
        return item
    except Exception as e:  # noqa: BLE001 - only out-of-memory is turned into a result
        if not _is_oom(e):
            raise
        error = f"out of memory ({type(e).__name__}: {str(e).splitlines()[0][:160]})"
    # outside the except block, so the failed call's tensors can be freed
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return _Item(name, None, 0, 0, 0, error=error)


def _time_items(
    build: Callable[[str], tuple[_Item, Callable[[Any], None] | None]],
    names: Sequence[str],
    warmup: int,
    iters: int,
    compare: bool,
    device: torch.device,
    progress: Callable[[str], None] | None,
) -> list[_Item]:
    """Build, warm up, measure memory and time every name; interleaved when ``compare``.

    A model that runs out of memory is reported with its error instead of stopping the run.
    """
    say = progress or (lambda s: None)
    t0 = time.perf_counter()
    done: list[_Item] = []
    if compare:
        items = []
        for name in names:
            items.append(_prepared(build, name, warmup, device))
            say(f"{name}: " + (items[-1].error or "ready"))
        ok = [item for item in items if item.error is None]
        for r in range(iters):
            for j in range(len(ok)):
                _time_once(ok[(r + j) % len(ok)], t0)
        done = items
    else:
        for name in names:
            item = _prepared(build, name, warmup, device)
            if item.error is None:
                for _ in range(iters):
                    _time_once(item, t0)
            say(f"{name}: " + (item.error or
                               f"median {_percentile(sorted(item.times), 50) * 1e3:.2f} ms"))
            item.run = None  # free the model before building the next one
            done.append(item)
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
    for item in done:
        item.run = None
    return done


def _rows(items: list[_Item], batch: int, reference: dict | None) -> list[dict]:
    rows = []
    for item in items:
        if item.error is not None:
            rows.append({"name": item.name, "error": item.error})
            continue
        t = sorted(item.times)
        med = _percentile(t, 50)
        gflops = 2 * item.macs * batch / med / 1e9
        peak = (None if item.peak_extra is None
                else (item.peak_extra + item.resident_bytes) / 2**20)
        rows.append({
            "name": item.name,
            "error": None,
            "params_m": item.params / 1e6,
            "gmac": item.macs / 1e9,
            "median_ms": med * 1e3,
            "p10_ms": _percentile(t, 10) * 1e3,
            "p90_ms": _percentile(t, 90) * 1e3,
            "mean_ms": sum(t) / len(t) * 1e3,
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


# --------------------------------------------------------------------------------------------
# what is timed


def _autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=PRECISIONS[precision])


def _make_run(
    fn: Callable[..., torch.Tensor],
    inputs: tuple[torch.Tensor, ...],
    device: torch.device,
    precision: str,
    argmax: bool,
) -> Callable[[], torch.Tensor]:
    def run() -> torch.Tensor:
        with torch.inference_mode(), _autocast(device, precision):
            y = fn(*inputs)
            if argmax:
                y = y.argmax(1)
        _sync(device)
        return y

    return run


def _first_call_errors(name: str, device: torch.device, precision: str, compile: bool,
                       run: Callable[[], Any]) -> Callable[[], Any]:
    """Wrap ``run`` so that the first call's failure becomes a clear error."""
    state = {"first": True}

    def wrapped() -> Any:
        if not state["first"]:
            return run()
        state["first"] = False
        try:
            return run()
        except Exception as e:  # noqa: BLE001 - re-raised with the cause spelled out
            if precision != "fp32":
                raise RuntimeError(
                    f"{name}: --precision {precision} does not run on {device.type} with torch "
                    f"{torch.__version__} ({type(e).__name__}: {e}); use another precision"
                ) from e
            if compile:
                raise RuntimeError(f"{name}: torch.compile failed ({type(e).__name__}: {e})") from e
            raise

    return wrapped


def _prepare(
    module: nn.Module,
    device: torch.device,
    channels_last: bool,
    compile: bool,
    compile_mode: str | None,
) -> Callable[..., torch.Tensor]:
    module.to(device)
    if channels_last:
        module.to(memory_format=torch.channels_last)
    if compile:
        return torch.compile(module, mode=compile_mode)
    return module


def _randn(shape: Sequence[int], device: torch.device, channels_last: bool,
           g: torch.Generator) -> torch.Tensor:
    x = torch.randn(*shape, generator=g).to(device)
    return x.contiguous(memory_format=torch.channels_last) if channels_last and x.dim() == 4 else x


def _check_names(names: Sequence[str], valid: Sequence[str], what: str) -> list[str]:
    out: list[str] = []
    for n in names:
        if n == "all":
            out += [v for v in valid if v not in out]
        elif n not in valid:
            raise ValueError(f"unknown {what} {n!r}; available: {', '.join(valid)} (or 'all')")
        elif n not in out:
            out.append(n)
    if not out:
        raise ValueError(f"no {what} given; name one or more of: {', '.join(valid)} (or 'all')")
    return out


def _module_case(name: str, channels: int, size: tuple[int, int]):
    """(module or None, call(module, *inputs), input shapes for batch 1) of a micro benchmark."""
    c, (h, w) = channels, size
    half = (math.ceil(h / 2), math.ceil(w / 2))
    if name in PAIRWISE:
        return (create_upsampler(name, c, c, c), lambda m, coarse, fine: m(coarse, fine),
                [(1, c, *half), (1, c, h, w)])
    if name == "ifa":
        shapes = [(1, c, math.ceil(h / 2**i), math.ceil(w / 2**i)) for i in range(4)]
        return (IFA([c] * 4, c, hidden=(2 * c, c, c)),
                lambda m, *levels: m(list(levels), (h, w)), shapes)
    if name == "attention:fast":  # FANet: 32-channel keys, values keep C
        return None, lambda m, q, k, v: fast_attention(q, k, v), [(1, 32, h, w)] * 2 + [
            (1, c, h, w)]
    # GAI's sizes for channels C: keys C/16, values C/2
    d, cv = max(c // 16, 1), max(c // 2, 1)
    attend = criss_cross_attention if name == "attention:criss_cross" else nonlocal_attention
    return None, lambda m, q, k, v: attend(q, k, v), [(1, d, h, w)] * 2 + [(1, cv, h, w)]


# --------------------------------------------------------------------------------------------
# the library entry points


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
) -> dict[str, Any]:
    """Time models (or, with ``modules``, upsampler/attention modules); see the module doc.

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

    Returns:
        ``{"settings": {...}, "reference": {...} or None, "results": [row, ...]}``; a row has
        name, params_m, gmac (per sample), median_ms, p10_ms, p90_ms, mean_ms, fps, gflops,
        efficiency_pct, peak_mem_mb, first_call_ms, relative (median / fastest median),
        times_ms and starts_s (every timed call and when it started, for the record); models
        add bn_folded and bn_left. ``error`` is None, or the reason a model was not timed (out
        of memory; that row has no other fields and the run goes on).
    """
    if bool(models) == bool(modules):
        raise ValueError("give model names or --module names (not both, not neither)")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    dev = resolve_device(device) if isinstance(device, str) else device
    cuda = dev.type == "cuda"
    warmup = (10 if cuda else 2) if warmup is None else warmup
    iters = (50 if cuda else 10) if iters is None else iters
    if warmup < 1 or iters < 1 or batch < 1:
        raise ValueError("warmup, iters and batch must be >= 1 (the first call is never timed)")
    kind = "modules" if modules else "models"
    names = (_check_names(modules, MODULES, "module") if modules
             else _check_names(models, list_models(), "model"))
    size = tuple(size or ((128, 256) if modules else (1024, 2048)))
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"size must be two positive integers (H W), got {size}")
    saved_threads = torch.get_num_threads()
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)

    def build_model(name: str) -> tuple[_Item, Callable[[Any], None]]:
        model = create_model(name, num_classes, aux=False).eval()
        params, macs = count_params(model), count_macs(model, size)
        extra = {"bn_folded": None, "bn_left": count_bn(model)}
        if fold_bn:
            before = extra["bn_left"]
            model = fold_batchnorm(model)
            extra = {"bn_folded": before - count_bn(model), "bn_left": count_bn(model)}
        x = _randn((batch, 3, *size), dev, channels_last, g)
        fn = _prepare(model, dev, channels_last, compile, compile_mode)
        run = _first_call_errors(name, dev, precision, compile,
                                 _make_run(fn, (x,), dev, precision, argmax))
        resident = _tensor_bytes([*model.parameters(), *model.buffers(), x])

        def check(y: torch.Tensor) -> None:
            want = (batch, *size) if argmax else (batch, num_classes, *size)
            if tuple(y.shape) != want:
                raise RuntimeError(f"{name}: output {tuple(y.shape)}, expected {want}")

        return _Item(name, run, params, macs, resident, extra), check

    def build_module(name: str) -> tuple[_Item, None]:
        module, call, shapes = _module_case(name, channels, size)
        macs = count_call_macs(call, module, shapes)
        params = count_params(module) if module is not None else 0
        if module is not None:
            module.eval()
        inputs = tuple(_randn((batch, *s[1:]), dev, channels_last, g) for s in shapes)
        if module is not None:
            fn = _prepare(module, dev, channels_last, compile, compile_mode)
            run_fn = lambda *a: call(fn, *a)  # noqa: E731
        else:
            run_fn = torch.compile(lambda *a: call(None, *a), mode=compile_mode) if compile \
                else (lambda *a: call(None, *a))
        run = _first_call_errors(name, dev, precision, compile,
                                 _make_run(run_fn, inputs, dev, precision, argmax=False))
        resident = _tensor_bytes([*(module.parameters() if module is not None else ()),
                                  *(module.buffers() if module is not None else ()), *inputs])
        return _Item(name, run, params, macs, resident), None

    try:
        with _backend_flags(dev, tf32, cudnn_benchmark):
            ref = matmul_reference(dev, reference_size) if reference else None
            if ref is not None and progress:
                progress(f"reference fp32 matmul {ref['n']}: {ref['gflops']:.1f} GFLOP/s")
            items = _time_items(build_module if modules else build_model, names, warmup,
                                iters, compare, dev, progress)
            settings = describe_settings(
                dev, kind=kind, precision=precision, channels_last=channels_last,
                compile=compile, compile_mode=compile_mode, fold_bn=fold_bn, argmax=argmax,
                size=size, batch=batch, warmup=warmup, iters=iters, compare=compare,
                num_classes=num_classes, channels=channels if modules else None, tf32=tf32,
                cudnn_benchmark=cudnn_benchmark)
    finally:
        torch.set_num_threads(saved_threads)
    return {"settings": settings, "reference": ref,
            "results": _rows(items, batch, ref)}


def benchmark(models: Sequence[str], **kwargs: Any) -> list[dict]:
    """The result rows of :func:`run_benchmark` (same arguments), one dict per model."""
    return run_benchmark(models, **kwargs)["results"]


def describe_settings(device: torch.device, **settings: Any) -> dict[str, Any]:
    """Everything that changes the numbers, for the report header and the JSON file."""
    out: dict[str, Any] = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": device_name(device),
        "device_type": device.type,
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
    }
    out.update(settings)
    out["size"] = list(out["size"])
    if device.type == "cuda":
        out["cuda"] = torch.version.cuda
        out["cudnn"] = torch.backends.cudnn.version()
    else:
        out["tf32"] = out["cudnn_benchmark"] = None
    out["timer"] = ("time.perf_counter per call" + (", torch.cuda.synchronize() after each"
                                                    if device.type == "cuda" else ""))
    return out


# --------------------------------------------------------------------------------------------
# report and command line


def _short(x: float) -> str:
    """Two decimals, or three significant digits below 1 (tiny modules)."""
    return f"{x:.2f}" if x >= 1 or x == 0 else f"{x:.3g}"


def format_report(result: dict[str, Any]) -> str:
    """Settings, reference and the results table as text."""
    s, ref, rows = result["settings"], result["reference"], result["results"]
    lines = [
        f"torch {s['torch']} | {s['device']} ({s['device_type']}) | threads {s['threads']}"
        + (f" | CUDA {s.get('cuda')} cuDNN {s.get('cudnn')} | tf32 {s['tf32']} | "
           f"cudnn.benchmark {s['cudnn_benchmark']}" if s["device_type"] == "cuda" else ""),
        f"precision {s['precision']} | channels-last {s['channels_last']} | compile "
        f"{s['compile']}" + (f" ({s['compile_mode']})" if s["compile"] and s["compile_mode"]
                             else "")
        + f" | fold-bn {s['fold_bn']} | argmax {s['argmax']} | "
        + ("input" if s["kind"] == "models" else f"feature C={s['channels']}")
        + f" {s['size'][0]}×{s['size'][1]} | batch {s['batch']} | warm-up {s['warmup']} | "
        f"timed {s['iters']}" + (" | interleaved (--compare)" if s["compare"] else ""),
    ]
    if ref is not None:
        lines.append(f"reference: fp32 matmul {ref['n']}×{ref['n']} @ {ref['n']}×{ref['n']}: "
                     f"{ref['gflops']:.1f} GFLOP/s (median of {ref['repeats']})")
    head = ["model" if s["kind"] == "models" else "module", "params (M)", "GMAC",
            "median ms", "p10 ms", "p90 ms", "FPS", "GFLOP/s", "% matmul", "peak MB", "× fastest"]
    table = [head]
    for r in rows:
        if r["error"] is not None:
            continue
        table.append([
            r["name"], _short(r["params_m"]), _short(r["gmac"]), f"{r['median_ms']:.2f}",
            f"{r['p10_ms']:.2f}", f"{r['p90_ms']:.2f}", f"{r['fps']:.2f}", f"{r['gflops']:.1f}",
            "n/a" if r["efficiency_pct"] is None else f"{r['efficiency_pct']:.1f}",
            "n/a" if r["peak_mem_mb"] is None else f"{r['peak_mem_mb']:.0f}",
            f"{r['relative']:.2f}",
        ])
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    for row in table:
        lines.append("  ".join(x.ljust(w) if i == 0 else x.rjust(w)
                               for i, (x, w) in enumerate(zip(row, widths, strict=True))))
    for r in rows:
        if r["error"] is not None:
            lines.append(f"{r['name']}: not timed: {r['error']}")
    if s["fold_bn"] and s["kind"] == "models":
        left = {r["name"]: r["bn_left"] for r in rows if r.get("bn_left")}
        lines.append("BN folded in every model" + (f" except: {left}" if left else ""))
    lines.append("GMAC per sample (conv + matmul/attention products); GFLOP/s = 2·GMAC·batch / "
                 "median; peak MB = weights + input + the largest extra during one call ("
                 + ("torch.cuda.max_memory_allocated" if s["device_type"] == "cuda"
                    else "peak-RSS rise, approximate") + ").")
    return "\n".join(lines)


def configure_parser(p: argparse.ArgumentParser) -> None:
    """Add the ``rtseg bench`` arguments to ``p``."""
    p.add_argument("models", nargs="*", metavar="MODEL",
                   help=f"models to time, or 'all' ({', '.join(list_models())})")
    p.add_argument("--module", nargs="+", metavar="NAME", dest="modules", default=[],
                   help="time upsampler/attention modules instead of models: "
                        f"{', '.join(MODULES)}, or 'all'")
    p.add_argument("--channels", type=int, default=128, help="C of the --module inputs")
    p.add_argument("--size", nargs=2, type=int, metavar=("H", "W"),
                   help="input size (default 1024 2048), or the --module feature size "
                        "(default 128 256)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--precision", choices=list(PRECISIONS), default="fp32",
                   help="fp16/bf16 run under torch.autocast")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--compile", action="store_true", help="torch.compile every model")
    p.add_argument("--compile-mode", choices=["default", "reduce-overhead", "max-autotune"])
    p.add_argument("--fold-bn", action="store_true",
                   help="fold BatchNorm into the preceding convs (every model)")
    p.add_argument("--argmax", action="store_true", help="include the argmax to labels")
    p.add_argument("--threads", type=int, help="torch.set_num_threads")
    p.add_argument("--warmup", type=int, help="untimed calls (default 10 CUDA, 2 CPU)")
    p.add_argument("--iters", type=int, help="timed calls (default 50 CUDA, 10 CPU)")
    p.add_argument("--compare", action="store_true",
                   help="interleave the timed calls of all models (round robin)")
    p.add_argument("--num-classes", type=int, default=19)
    p.add_argument("--matmul-size", type=int,
                   help="n of the fp32 matmul reference (default 2048 CPU, 8192 CUDA)")
    p.add_argument("--no-reference", action="store_true", help="skip the matmul reference")
    p.add_argument("--tf32", action="store_true", help="allow TF32 (CUDA; default: true fp32)")
    p.add_argument("--cudnn-benchmark", action=argparse.BooleanOptionalAction, default=True,
                   help="cuDNN autotuning (CUDA)")
    p.add_argument("--json", metavar="FILE", help="write settings and results as JSON")


def main(args: argparse.Namespace) -> int:
    """``rtseg bench``: print the table, optionally write JSON; 2 on a usage error."""
    def progress(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    try:
        result = run_benchmark(
            models=args.models, size=tuple(args.size) if args.size else None, batch=args.batch,
            device=args.device, precision=args.precision, channels_last=args.channels_last,
            compile=args.compile, fold_bn=args.fold_bn, argmax=args.argmax,
            warmup=args.warmup, iters=args.iters, compare=args.compare, threads=args.threads,
            num_classes=args.num_classes, modules=args.modules, channels=args.channels,
            reference=not args.no_reference, reference_size=args.matmul_size, tf32=args.tf32,
            cudnn_benchmark=args.cudnn_benchmark,
            compile_mode=None if args.compile_mode in (None, "default") else args.compile_mode,
            progress=progress)
    except (KeyError, ValueError, RuntimeError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        print(f"rtseg bench: error: {msg}", file=sys.stderr)
        return 2
    print(format_report(result))
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=1))
        print(f"wrote {path}")
    return 0
