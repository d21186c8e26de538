"""What is timed: a registered model on a random image, or one module on random features.

:func:`build_model` and :func:`build_module` turn a name into a
:class:`~rtseg.bench.timing.Item`: the network is moved to the device (optionally channels-last,
BN-folded, compiled) and ``run()`` is one forward pass under ``torch.inference_mode()`` and the
run's autocast, followed by a device synchronisation. The module cases (:data:`MODULES`) are
the pairwise upsamplers, IFA, and the bare attention kernels at the sizes their networks use.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn

from ..complexity import count_call_macs, count_macs, count_params
from ..deploy.fuse import count_bn, fold_batchnorm
from ..errors import UsageError
from ..inference.peak_memory import tensor_bytes
from ..layers import fast_inference
from ..registry import create_model
from ..upsample import (
    IFA,
    PAIRWISE,
    create_upsampler,
    criss_cross_attention,
    fast_attention,
    nonlocal_attention,
)
from ..upsample.gai import criss_cross_attention_blocked
from ..utils import autocast
from .timing import Check, Item, sync

ATTENTIONS = ("attention:fast", "attention:criss_cross", "attention:nonlocal")
MODULES = (*PAIRWISE, "ifa", *ATTENTIONS)
# the network whose achieved GFLOP/s sets every row's floor (see timing.add_floors)
RATE_MODEL = "fpn_r18_bilinear"


def rate_name(size: tuple[int, int]) -> str:
    """Name of the rate row in a module run at feature size ``size``: the baseline network on
    an input 4× larger, whose stride-4 feature (where its last upsampling runs) is ``size``."""
    return f"{RATE_MODEL} (input {4 * size[0]}×{4 * size[1]}, rate)"


@dataclass
class Setup:
    """How every case of one run is built and called (see :func:`rtseg.bench.run_benchmark`)."""

    device: torch.device
    size: tuple[int, int]  # input size (models) or feature size (modules)
    batch: int = 1
    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    compile_mode: str | None = None
    argmax: bool = False
    # one generator for the whole run, so every case's inputs are reproducible
    generator: torch.Generator = field(default_factory=lambda: torch.Generator().manual_seed(0))

    def randn(self, shape: Sequence[int]) -> torch.Tensor:
        x = torch.randn(*shape, generator=self.generator).to(self.device)
        if self.channels_last and x.dim() == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def prepare(self, module: nn.Module) -> Callable[..., torch.Tensor]:
        """``module`` on the device, channels-last and compiled as asked."""
        module.to(self.device)
        if self.channels_last:
            module.to(memory_format=torch.channels_last)
        if self.compile:
            return torch.compile(module, mode=self.compile_mode)
        return module


def make_run(setup: Setup, fn: Callable[..., torch.Tensor], inputs: tuple[torch.Tensor, ...],
             argmax: bool) -> Callable[[], torch.Tensor]:
    """The timed call ``rtseg bench`` makes: ``fn(*inputs)`` under inference mode and the
    run's autocast (optionally to labels), then a device synchronisation."""

    def run() -> torch.Tensor:
        with torch.inference_mode(), autocast(setup.device, setup.precision):
            y = fn(*inputs)
            if argmax:
                y = y.argmax(1)
        sync(setup.device)
        return y

    return run


def _first_call_errors(name: str, setup: Setup, run: Callable[[], Any]) -> Callable[[], Any]:
    """Wrap ``run`` so that a first call failing for the precision or compile asked for says so."""
    state = {"first": True}

    def wrapped() -> Any:
        if not state["first"]:
            return run()
        state["first"] = False
        try:
            return run()
        except Exception as e:  # noqa: BLE001 - re-raised with the cause spelled out
            if setup.precision != "fp32":
                raise UsageError(
                    f"{name}: --precision {setup.precision} does not run on {setup.device.type} "
                    f"with torch {torch.__version__} ({type(e).__name__}: {e}); use another "
                    "precision") from e
            if setup.compile:
                raise UsageError(f"{name}: torch.compile failed ({type(e).__name__}: {e})") from e
            raise

    return wrapped


# How each runtime gets GUM's sampling (ONNX Runtime's GridSample kernel is the slow one).
GRID_SAMPLE_FOR = {"onnxruntime": "gather", "openvino": "op"}


def _exported(model: nn.Module, setup: Setup, backend: str) -> nn.Module:
    """``model`` exported to ONNX (static, the run's batch and size) and loaded in
    ``backend`` with the run's thread count: a callable on torch tensors like the model.
    GUM's sampling is exported the way that runtime runs faster (docs/deploy.md, "What the
    exported graph computes"): four gathers for ONNX Runtime, ``GridSample`` for OpenVINO."""
    import tempfile
    import warnings

    from ..deploy.export import export_onnx
    from ..deploy.runtimes import RUNTIMES

    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = export_onnx(model, f"{tmp}/model.onnx", setup.size, dynamic=False,
                           batch=setup.batch, grid_sample=GRID_SAMPLE_FOR[backend])
        return RUNTIMES[backend](path, threads=torch.get_num_threads())


def build_model(name: str, setup: Setup, num_classes: int = 19,
                fold_bn: bool = False) -> tuple[Item, Check]:
    """Registered model ``name`` (eval, no auxiliary heads) on a batch×3×H×W random input;
    ``"<model>@<backend>"`` runs its ONNX export in that runtime (onnxruntime, openvino)."""
    name, _, backend = name.partition("@")
    model = create_model(name, num_classes, aux=False).eval()
    params, macs = count_params(model), count_macs(model, setup.size)
    extra = {"bn_folded": None, "bn_left": count_bn(model)}
    if fold_bn:
        before = extra["bn_left"]
        model = fold_batchnorm(model)
        extra = {"bn_folded": before - count_bn(model), "bn_left": count_bn(model)}
    x = setup.randn((setup.batch, 3, *setup.size))
    resident = tensor_bytes([*model.parameters(), *model.buffers(), x])
    if backend and backend != "torch":
        if getattr(model, "temporal", False):
            raise UsageError(f"{name}: the ONNX export of a temporal model is its single-frame "
                             "graph; time it with --backend torch (the streaming step)")
        run = make_run(setup, _exported(model, setup, backend), (x,), setup.argmax)
        name = f"{name} [{backend}]"
    else:
        if getattr(model, "temporal", False):
            model = Streaming(model.to(setup.device), x)
        run = make_run(setup, setup.prepare(model), (x,), setup.argmax)
    want = (setup.batch, *setup.size) if setup.argmax else (setup.batch, num_classes, *setup.size)

    def check(y: torch.Tensor) -> None:
        if tuple(y.shape) != want:
            raise RuntimeError(f"{name}: output {tuple(y.shape)}, expected {want}")

    return Item(name, _first_call_errors(name, setup, run), params, macs, resident, extra), check


class Streaming(nn.Module):
    """A temporal model timed as it runs on video: one ``step`` per frame, the state of
    ``model.past`` earlier frames included (their summaries summed, this frame's computed)."""

    def __init__(self, model: nn.Module, frame: torch.Tensor) -> None:
        super().__init__()
        self.model, self.state = model, None
        with torch.inference_mode():
            for _ in range(model.past):
                _, self.state = model.step(frame, self.state)

    def forward(self, frame: torch.Tensor) -> torch.Tensor:
        return self.model.step(frame, self.state)[0]


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

    def attend(m: None, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if name == "attention:nonlocal":
            return nonlocal_attention(q, k, v)
        fast = fast_inference(None, q, k, v)  # the kernel GAI runs (see --reference-paths)
        return (criss_cross_attention_blocked if fast else criss_cross_attention)(q, k, v)

    return None, attend, [(1, d, h, w)] * 2 + [(1, cv, h, w)]


def build_module(name: str, setup: Setup, channels: int = 128) -> tuple[Item, Check | None]:
    """Module ``name`` of :data:`MODULES` with C = ``channels`` at the feature size H×W (or
    the rate row, :func:`rate_name`)."""
    if name == rate_name(setup.size):
        h, w = setup.size
        item, check = build_model(RATE_MODEL, replace(setup, size=(4 * h, 4 * w)))
        item.name = name
        return item, check
    module, call, shapes = _module_case(name, channels, setup.size)
    macs = count_call_macs(call, module, shapes)
    inputs = tuple(setup.randn((setup.batch, *s[1:])) for s in shapes)
    if module is None:
        params, resident = 0, tensor_bytes(inputs)
        fn = lambda *a: call(None, *a)  # noqa: E731
        if setup.compile:
            fn = torch.compile(fn, mode=setup.compile_mode)
    else:
        module.eval()
        params = count_params(module)
        resident = tensor_bytes([*module.parameters(), *module.buffers(), *inputs])
        prepared = setup.prepare(module)
        fn = lambda *a: call(prepared, *a)  # noqa: E731
    run = make_run(setup, fn, inputs, argmax=False)
    return Item(name, _first_call_errors(name, setup, run), params, macs, resident), None
