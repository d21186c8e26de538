"""What one benchmark run times and how: :class:`BenchSettings`, checked once when made."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..errors import UnknownNameError, UsageError
from ..registry import list_models
from ..utils import PRECISIONS, resolve_device
from .cases import MODULES, rate_name


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


@dataclass
class BenchSettings:
    """The settings of one :func:`~rtseg.bench.run_benchmark` run; see :mod:`rtseg.bench`.

    Checked once when made: a bad value raises there with a one-line message, and the fields
    are then normalised (``all`` expanded and repeats dropped in ``models``/``modules``,
    ``device`` resolved to a :class:`torch.device`, ``size``, ``warmup`` and ``iters`` given
    their defaults, ``backends`` a list without repeats). Fields (as the keyword arguments of
    :func:`~rtseg.bench.run_benchmark` always were):

    Attributes:
        models: registered model names (or "all"), each run on a ``batch``×3×H×W input.
        size: (H, W): the input size (models, default 1024×2048) or the feature size of the
            module micro benchmark (default 128×256, stride 8 of 1024×2048).
        batch, device, precision: the input batch, "auto"/"cpu"/"cuda[:N]", and "fp32",
            "fp16" or "bf16" (autocast).
        channels_last, compile, fold_bn, argmax: channels-last memory format,
            ``torch.compile``, BatchNorm folded into the convolutions, the label map included.
        warmup, iters: untimed and timed calls per model (defaults: 10/50 on CUDA, 2/10 on CPU).
        compare: interleave the timed calls of all models (round robin).
        threads: ``torch.set_num_threads`` for the run (restored afterwards).
        num_classes: K of the models' output.
        modules: instead of models, names from :data:`~rtseg.bench.MODULES`.
        channels: C of the module micro benchmark.
        reference, reference_size: time the fp32 matmul reference (n = ``reference_size``)
            for the efficiency column.
        tf32, cudnn_benchmark: TF32 in cuDNN convolutions and CUDA matmuls; cuDNN autotuning.
        compile_mode: ``torch.compile``'s mode (None: its default).
        backends: run every model in each of these: ``torch``, ``onnxruntime``, ``openvino``.
        floor: give every row a floor (``floor_ms``, ``over_floor``).
        reference_paths: run the upsamplers' plain formulas instead of their fast paths.

    Raises:
        UnknownNameError: an unknown model, module or backend name.
        UsageError: any other value the run cannot honour (both or neither of models and
            modules, a bad size, CUDA where there is none, a precision the device cannot run).
    """

    models: Sequence[str] = ()
    size: tuple[int, int] | None = None
    batch: int = 1
    device: str | torch.device = "auto"
    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    fold_bn: bool = False
    argmax: bool = False
    warmup: int | None = None
    iters: int | None = None
    compare: bool = False
    threads: int | None = None
    num_classes: int = 19
    modules: Sequence[str] = ()
    channels: int = 128
    reference: bool = True
    reference_size: int | None = None
    tf32: bool = False
    cudnn_benchmark: bool = True
    compile_mode: str | None = None
    backends: Sequence[str] = ("torch",)
    floor: bool = True
    reference_paths: bool = False

    def __post_init__(self) -> None:
        if bool(self.models) == bool(self.modules):
            raise UsageError("give model names or --module names (not both, not neither)")
        if self.precision not in PRECISIONS:
            raise UsageError(f"precision must be one of {', '.join(PRECISIONS)}, "
                             f"got {self.precision!r}")
        self.device = resolve_device(self.device)
        cuda = self.device.type == "cuda"
        self.warmup = (10 if cuda else 2) if self.warmup is None else self.warmup
        self.iters = (50 if cuda else 10) if self.iters is None else self.iters
        if self.warmup < 1 or self.iters < 1 or self.batch < 1:
            raise UsageError("warmup, iters and batch must be >= 1 (the first call is never "
                             "timed)")
        if self.modules:
            self.modules = _check_names(self.modules, MODULES, "module")
        else:
            self.models = _check_names(self.models, list_models(), "model")
        self._check_backends()
        self.size = tuple(self.size or ((128, 256) if self.modules else (1024, 2048)))
        if len(self.size) != 2 or min(self.size) < 1:
            raise UsageError(f"size must be two positive integers (H W), got {self.size}")
        if self.threads is not None and self.threads < 1:
            raise UsageError(f"threads must be >= 1, got {self.threads}")

    def _check_backends(self) -> None:
        from ..deploy.runtimes import require

        self.backends = list(dict.fromkeys(self.backends)) or ["torch"]
        for b in self.backends:
            require(b)
        exported = [b for b in self.backends if b != "torch"]
        torch_only = self.channels_last or self.compile or self.fold_bn
        if exported and (self.modules or self.device.type != "cpu" or self.precision != "fp32"
                         or torch_only):
            raise UsageError(f"--backend {','.join(exported)} times whole models in fp32 on "
                             "the CPU, without --channels-last, --compile or --fold-bn")

    @property
    def kind(self) -> str:
        """"modules" or "models": what the run times."""
        return "modules" if self.modules else "models"

    def timed_names(self) -> list[str]:
        """Every name the run times: models with ``@backend`` for each runtime other than
        torch, or modules (and, with ``floor``, the network that gives the modules' rate)."""
        if self.modules:
            return list(self.modules) + ([rate_name(self.size)] if self.floor else [])
        return [n if b == "torch" else f"{n}@{b}" for n in self.models for b in self.backends]
