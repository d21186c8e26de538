"""Exported models behind the Segmenter: ONNX Runtime and OpenVINO, and which one ``auto`` picks.

An :class:`OnnxRuntimeModel` / :class:`OpenVINOModel` is a callable that takes and returns torch
tensors like an eval-mode ``nn.Module`` (B×3×H×W normalised float → B×K×H×W logits), so the
Segmenter's test-time options (sliding windows, scales, flip) work unchanged on top of it; what
else inference needs comes from the file's metadata (:mod:`rtseg.deploy.metadata`).

:func:`ort_session` is the one place an ONNX Runtime session is set up (options, threads,
providers): the runtime class, the export check (:mod:`rtseg.deploy.export`) and the int8
agreement measure (:mod:`rtseg.deploy.quantize`) all use it. The ``auto`` policy
(:func:`auto_order`, :func:`pick_backend`) follows interleaved timings on this project's CPU
(``docs/deploy.md``). Moved here from ``rtseg/backends.py``.
"""

from __future__ import annotations

import contextlib
import ctypes
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import CheckpointError, UsageError, first_line
from .metadata import is_exported, read_metadata

BACKENDS = ("torch", "onnxruntime", "openvino")
_INSTALL = {"onnxruntime": 'pip install "rtseg[full]" (onnxruntime)',
            "openvino": 'pip install "rtseg[openvino]"'}


def installed(backend: str) -> bool:
    """Whether the runtime of ``backend`` can be imported here."""
    import importlib.util

    return backend == "torch" or importlib.util.find_spec(backend) is not None


def require(backend: str) -> None:
    """UsageError unless ``backend`` is a known backend that is installed here."""
    if backend not in BACKENDS:
        raise UsageError(f"unknown backend {backend!r}; use auto, {', '.join(BACKENDS)}")
    if not installed(backend):
        raise UsageError(f"backend {backend!r} is not installed: {_INSTALL[backend]}")


def ort_session(path: str | Path, threads: int | None = None) -> Any:
    """An ONNX Runtime ``InferenceSession`` of the file at ``path`` on the CPU provider, with
    ``threads`` intra-op threads (default: ONNX Runtime's) and only errors logged; a file ONNX
    Runtime cannot load raises CheckpointError."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - ONNX Runtime's own errors
        raise CheckpointError(f"{path}: ONNX Runtime cannot load it ({type(e).__name__}: "
                              f"{first_line(e)})") from None


class _ExportedModel:
    """The nn.Module surface the Segmenter uses: ``to``, ``eval`` and a call."""

    static_shape: tuple[int, ...] | None = None  # (B, 3, H, W) of a --static export

    def to(self, device: Any) -> _ExportedModel:
        if torch.device(device).type != "cpu":
            raise UsageError(f"{type(self).__name__} runs on the CPU here; use device='cpu'")
        return self

    def eval(self) -> _ExportedModel:
        return self

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise UsageError(f"an exported model takes B×3×H×W images, got {tuple(x.shape)}")
        if self.static_shape is not None and tuple(x.shape) != self.static_shape:
            b, _, h, w = self.static_shape
            raise UsageError(f"this export is static: it takes {b}×3×{h}×{w} inputs, not "
                             f"{'×'.join(map(str, x.shape))}; use mode='slide', "
                             f"crop=({h}, {w}) (batch {b}) or export without --static")
        out = self._run(np.ascontiguousarray(x.detach().float().cpu().numpy()))
        return torch.from_numpy(np.asarray(out))

    def _run(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class OnnxRuntimeModel(_ExportedModel):
    """An ONNX file run by ONNX Runtime's CPU provider (``threads``: intra-op threads)."""

    backend = "onnxruntime"

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        self.session = ort_session(path, threads)
        self.input = self.session.get_inputs()[0].name

    def _run(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input: x})[0]


class _SignalStack(ctypes.Structure):
    _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int),
                ("ss_size", ctypes.c_size_t)]


@contextlib.contextmanager
def kept_signal_stack() -> Iterator[None]:
    """Put back the calling thread's alternate signal stack as it was before the block.

    OpenVINO 2026.4 (Linux) gives the calling thread a new alternate signal stack for each
    compiled model and puts back the one it found when that model is freed. Freed in another
    order than compiled (A, B compiled; A, then B freed), the thread is left on A's freed stack,
    and the next signal handled there (Python installs its handlers with ``SA_ONSTACK``: a
    Ctrl-C, an alarm) crashes the process with a segmentation fault
    (``tests/test_runtimes.py`` reproduces it). Keeping the thread's own stack, OpenVINO's
    is never used and whatever it puts back is valid. A no-op where libc has no
    ``sigaltstack``.
    """
    libc = ctypes.CDLL(None) if sys.platform.startswith("linux") else None
    if libc is None or not hasattr(libc, "sigaltstack"):
        yield
        return
    saved = _SignalStack()
    libc.sigaltstack(None, ctypes.byref(saved))
    try:
        yield
    finally:
        libc.sigaltstack(ctypes.byref(saved), None)


class OpenVINOModel(_ExportedModel):
    """An ONNX file compiled by OpenVINO for its CPU plugin."""

    backend = "openvino"

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        import openvino as ov

        core = ov.Core()
        # fp32 as exported: on CPUs with AVX-512 BF16 or AMX the plugin would otherwise run
        # in bf16 (logits ~1e-2 off); int8 and bf16 are deliberate choices, not a default.
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": "f32"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        with kept_signal_stack():
            try:
                self.compiled = core.compile_model(str(path), "CPU", config)
            except Exception as e:  # noqa: BLE001 - OpenVINO's own errors
                raise CheckpointError(f"{path}: OpenVINO cannot compile it "
                                      f"({type(e).__name__}: {first_line(e)})") from None
            self.request = self.compiled.create_infer_request()

    def _run(self, x: np.ndarray) -> np.ndarray:
        return self.request.infer({0: x})[0].copy()


RUNTIMES = {"onnxruntime": OnnxRuntimeModel, "openvino": OpenVINOModel}
# What "auto" runs an exported file in, from interleaved timings on this project's CPU (2
# threads; docs/deploy.md). fp32: ONNX Runtime was faster than OpenVINO at 512×1024 for every
# model but gun (265 ms against 311 ms at 512×1024; at 360×480 ONNX Runtime was faster for gun
# too, 103.9 against 109.3 ms on the CamVid test frames).
OPENVINO_FIRST_FP32 = frozenset({"gun"})
# int8, the rule: OpenVINO ran every measured int8 file faster than ONNX Runtime (docs/deploy.md),
# but with dynamic input shapes OpenVINO 2026.4 may fold a convolution's bias into the following
# FakeQuantize and apply channel 0's bias to every channel (fpn_r18_ifa and fpn_r18_gum changed
# 11 % and 19 % of the CamVid labels; tools/openvino_int8_repro.py reproduces it without rtseg
# and --scan lists the exposed convolutions of a file). With static shapes the pattern does not
# form (the scan finds no exposed convolution in any static int8 file). But OpenVINO 2026.4's
# low-precision transformations crash the process (SIGSEGV) on some int8 graphs (a requantised
# Concat: tools/openvino_concat_crash.py; pidnet_s and ddrnet23_slim had one until BNs stayed
# float), so the export compiles a static int8 file in OpenVINO in a child process and
# records the outcome (rtseg.openvino, openvino_compiles). So: an int8 file with
# static shapes that OpenVINO compiled at export goes to OpenVINO; any other int8 file to ONNX
# Runtime.


def openvino_compiles(path: str | Path, timeout: float = 300.0) -> str:
    """Compile the ONNX file at ``path`` in OpenVINO's CPU plugin in a child process (a crash
    there must not end the caller): ``"compiles"``, or ``"fails: <why>"``."""
    code = ("import sys, openvino as ov; core = ov.Core(); core.compile_model("
            "core.read_model(sys.argv[1]), 'CPU', {'INFERENCE_PRECISION_HINT': 'f32'})")
    try:
        done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"fails: no result in {timeout:.0f} s"
    why = child_failure(done)
    return "compiles" if why is None else f"fails: {why}"


def child_failure(done: subprocess.CompletedProcess) -> str | None:
    """Why a finished child process (text output captured) failed, None when it did not: the
    signal that ended it, else the last line of its standard error (or its exit status)."""
    if done.returncode == 0:
        return None
    if done.returncode < 0:
        return f"the process died (signal {-done.returncode})"
    lines = [x.strip() for x in done.stderr.splitlines() if x.strip()]
    return lines[-1] if lines else f"exit status {done.returncode}"


def auto_order(path: str | Path, meta: dict[str, Any] | None = None) -> tuple[str, str]:
    """The runtimes ``backend="auto"`` tries for the exported file at ``path``, best first
    (``meta``: its :func:`read_metadata`, when the caller has it already): an int8 file with
    static shapes that OpenVINO compiled at export in OpenVINO, any other in ONNX Runtime (why:
    the comment above this function); an fp32 or fp16 file in ONNX Runtime but for the models
    OpenVINO ran faster (:data:`OPENVINO_FIRST_FP32`)."""
    if meta is None:
        try:
            meta = read_metadata(path)
        except CheckpointError:  # refused with its own message when loaded
            return ("onnxruntime", "openvino")
    if meta["precision"] == "int8":
        openvino_first = not meta.get("dynamic", True) and meta.get("openvino") == "compiles"
    else:
        openvino_first = meta["model"] in OPENVINO_FIRST_FP32
    return ("openvino", "onnxruntime") if openvino_first else ("onnxruntime", "openvino")


def pick_backend(path: str | Path, backend: str = "auto",
                 meta: dict[str, Any] | None = None) -> str:
    """The backend for the file at ``path``: a .pt checkpoint runs in torch, an .onnx file in
    the named runtime, or with ``"auto"`` in the first installed of :func:`auto_order` (the
    runtime measured fastest for the file's model and precision)."""
    exported = is_exported(path)
    if backend == "auto":
        if not exported:
            return "torch"
        for name in auto_order(path, meta):
            if installed(name):
                return name
        raise UsageError(f"{path}: no runtime for it is installed: {_INSTALL['onnxruntime']}")
    require(backend)
    if backend == "torch" and exported:
        raise UsageError(f"{path}: an exported file runs in onnxruntime or openvino, not torch")
    if backend != "torch" and not exported:
        raise UsageError(f"{path}: backend {backend!r} runs an exported .onnx file; export "
                         f"the checkpoint first: rtseg export {path} --onnx model.onnx")
    return backend
