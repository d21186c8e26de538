"""Small layers shared by every model: conv + BN + activation, and the one resize rtseg uses.

Coordinate convention (all of rtseg): a pixel is a cell and its value sits at the cell centre.
Resizing maps cell centres onto cell centres, i.e. ``align_corners=False``. Where an official
network used ``align_corners=True`` its model docstring says so.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn


def tracing_or_exporting() -> bool:
    """True under ``torch.jit.trace``, ONNX export or ``torch.export``: the graph being
    recorded must hold a formula every runtime can run at any size (the plain formula, or an
    upsampler's export-safe fast formula, :func:`fast_formula`)."""
    compiler = getattr(torch, "compiler", None)
    return bool(
        torch.jit.is_tracing()
        or torch.onnx.is_in_onnx_export()
        or (compiler is not None and getattr(compiler, "is_exporting", lambda: False)())
    )


def tracing_or_compiling() -> bool:
    """:func:`tracing_or_exporting`, or under ``torch.compile`` (where a cached tensor would be
    baked into the graph as a constant)."""
    compiler = getattr(torch, "compiler", None)
    return tracing_or_exporting() or bool(
        compiler is not None and getattr(compiler, "is_compiling", lambda: False)())


_FAST_PATHS = [True]
_EAGER_PATHS = [True]


@contextlib.contextmanager
def reference_paths() -> Iterator[None]:
    """Inside this block every upsampler runs its plain formula (the tests' oracle) in
    inference and in training (:func:`fast_training`) too: to time the fast paths against it
    (``rtseg bench --reference-paths``, ``tools.time_train_step --reference-paths``) or to
    rule them out when chasing a difference."""
    _FAST_PATHS.append(False)
    try:
        yield
    finally:
        _FAST_PATHS.pop()


@contextlib.contextmanager
def export_paths() -> Iterator[None]:
    """Inside this block every upsampler runs in eager PyTorch the formula an ONNX export
    records (its export-safe fast formula, :func:`fast_formula`; the eager-only fast paths
    off): to test those formulas against :func:`reference_paths` without a runtime."""
    _EAGER_PATHS.append(False)
    try:
        yield
    finally:
        _EAGER_PATHS.pop()


_STATIC_SIZES = [False]


@contextlib.contextmanager
def static_sizes() -> Iterator[None]:
    """Inside this block a recorded graph serves one input size (``export_onnx(dynamic=False)``
    records in it): an export-safe formula may then also branch on sizes (IFA's broadcast adds,
    CARAFE's phase slices), which a graph for every size cannot. In eager PyTorch it changes
    nothing but those formulas' choice (tests run them inside :func:`export_paths`)."""
    _STATIC_SIZES.append(True)
    try:
        yield
    finally:
        _STATIC_SIZES.pop()


def sizes_are_static() -> bool:
    """Whether the caller runs inside :func:`static_sizes`."""
    return _STATIC_SIZES[-1]


def fast_formula(module: nn.Module | None, *tensors: torch.Tensor) -> bool:
    """Whether ``module`` may use its *export-safe* fast formula on ``tensors``: eval mode, no
    gradient wanted (BatchNorm is folded from running statistics) and not inside
    :func:`reference_paths`. Unlike :func:`fast_inference` this holds while tracing and
    exporting too: an export-safe formula writes into no input, caches no tensor and reads
    every size from the tensors it is given (no Python number derived from a shape decides
    anything, except inside :func:`static_sizes`), so an ONNX graph may hold it at any input
    size."""
    if not _FAST_PATHS[-1]:
        return False
    params = () if module is None else module.parameters()
    needs_grad = torch.is_grad_enabled() and (
        any(t.requires_grad for t in tensors) or any(p.requires_grad for p in params))
    training = module is not None and module.training
    return not training and not needs_grad


def fast_inference(module: nn.Module | None, *tensors: torch.Tensor) -> bool:
    """Whether ``module`` may take its eager inference fast path on ``tensors``:
    :func:`fast_formula` (eval mode, no gradient wanted, not inside :func:`reference_paths`)
    and not being traced or exported. The eager paths write in place, cache tensors and branch
    on sizes, so a recorded graph holds the export-safe formula instead (each upsampler's
    module docstring says which). ``torch.compile`` does take the eager paths (measured faster
    there too; docs/benchmarks.md). Off inside :func:`export_paths`."""
    return (_EAGER_PATHS[-1] and fast_formula(module, *tensors)
            and not tracing_or_exporting())


def fast_training() -> bool:
    """Whether an upsampler may take its eager *training* fast path (a formula with its own
    backward, for calls that want gradients; CARAFE's, FADE's and SAPA's phase path): not
    inside :func:`reference_paths` or :func:`export_paths` and not being traced or exported
    (a recorded graph holds the plain formula)."""
    return _FAST_PATHS[-1] and _EAGER_PATHS[-1] and not tracing_or_exporting()


def activate(act: nn.Module | None, x: torch.Tensor) -> torch.Tensor:
    """``act(x)`` out of place (rtseg's ReLU and LeakyReLU modules run in place): for the
    export-safe formulas, which write into no tensor they did not make themselves."""
    if act is None or isinstance(act, nn.Identity):
        return x
    if isinstance(act, nn.LeakyReLU):
        return F.leaky_relu(x, act.negative_slope)
    if isinstance(act, nn.ReLU):
        return F.relu(x)
    return act(x)


def linear_rows(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None
                ) -> torch.Tensor:
    """``F.linear`` on the last axis of ``x`` (any leading axes) as one 2-D product: an ONNX
    export then records a ``Gemm`` holding the bias (and ONNX Runtime fuses a following ReLU
    into it), where a ``MatMul`` on a 4-D tensor needs a separate ``Add`` pass for the bias."""
    y = F.linear(x.reshape(-1, x.shape[-1]), weight, bias)
    return y.view(*x.shape[:-1], weight.shape[0])


def bn_affine(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) with ``bn(x) = x·scale + shift`` per channel, from running statistics."""
    scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
    return scale, bn.bias - bn.running_mean * scale


def folded(layer: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None, nn.Module | None]:
    """(C'×C weight, bias, activation) of a 1×1 ``nn.Conv2d`` or :class:`ConvBNAct` with its
    BatchNorm's running statistics folded in: ``act(x @ weight.T + bias)`` is the layer in
    eval mode on channels-last x."""
    conv, bn, act = ((layer, None, None) if isinstance(layer, nn.Conv2d)
                     else (layer.conv, layer.bn, layer.act))
    if conv.kernel_size != (1, 1) or conv.stride != (1, 1) or conv.groups != 1:
        raise ValueError(f"a pointwise layer must be a 1×1 convolution, got {conv}")
    w, b = conv.weight.flatten(1), conv.bias
    if isinstance(bn, nn.BatchNorm2d):
        scale, shift = bn_affine(bn)
        w, b = w * scale[:, None], shift + (0 if b is None else b * scale)
    return w, b, None if isinstance(act, nn.Identity) else act


def pointwise(parts: Sequence[torch.Tensor], layer: nn.Module) -> torch.Tensor:
    """A 1×1 ``layer`` (``nn.Conv2d`` or :class:`ConvBNAct`, eval mode) on channels-last input.

    Args:
        parts: B×H×W×C_i tensors (any strides: ``x.permute(0, 2, 3, 1)`` of an NCHW tensor is
            fine), taken as their concatenation along C, in order.
        layer: the 1×1 convolution; its BatchNorm (running statistics) is folded on the fly.

    Returns:
        B×H×W×C'. One GEMM per part and no concatenated copy: on this CPU a 1×1 convolution
        of an NCHW map runs about 2.5× slower through oneDNN than the same product as a GEMM.
    """
    w, b, act = folded(layer)
    out: torch.Tensor | None = None
    start = 0
    for x in parts:
        y = F.linear(x, w[:, start:start + x.shape[-1]], b if out is None else None)
        out = y if out is None else out.add_(y)
        start += x.shape[-1]
    if start != w.shape[1]:
        raise ValueError(f"pointwise: parts have {start} channels, the layer takes {w.shape[1]}")
    return out if act is None else act(out)


def resize(x: torch.Tensor, size: tuple[int, int] | torch.Size,
           align_corners: bool = False) -> torch.Tensor:
    """Bilinear resize of a …×C×h×w tensor (B×C×h×w, or B×T×C×h×w clips) to …×C×size,
    cell-centre convention (``align_corners=True``: corner pixels onto corner pixels, only for
    the official-compatible switches of FANet and IFA)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if x.dim() > 4:
        return resize(x.flatten(0, x.dim() - 4), size, align_corners).unflatten(0, x.shape[:-3])
    return F.interpolate(x, size=size, mode="bilinear", align_corners=align_corners)


def make_act(act: str | None) -> nn.Module:
    """'relu', 'leaky' (slope 0.01, as FANet's ABN emulation) or None."""
    if act is None:
        return nn.Identity()
    if act == "relu":
        return nn.ReLU(inplace=True)
    if act == "leaky":
        return nn.LeakyReLU(0.01, inplace=True)
    raise ValueError(f"unknown activation {act!r}; use 'relu', 'leaky' or None")


def kaiming_init(module: nn.Module) -> None:
    """The torchvision ResNet initialisation, used by the official code of several families:
    Kaiming-normal (fan-out, ReLU gain) conv weights, BN weight 1 and bias 0 (conv biases keep
    PyTorch's default)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class ConvBNAct(nn.Sequential):
    """Conv2d (no bias by default) → BatchNorm2d → activation. Keys: ``conv``, ``bn``, ``act``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 1,
        stride: int = 1,
        dilation: int = 1,
        act: str | None = "relu",
        bias: bool = False,
        padding: int | None = None,
    ) -> None:
        """``padding``: None keeps the size (``dilation·(kernel_size − 1)/2``)."""
        if padding is None:
            padding = dilation * (kernel_size - 1) // 2
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride, padding, dilation, bias=bias
        )
        self.bn = nn.BatchNorm2d(out_channels)
        self.act = make_act(act)


class SegHead(nn.Sequential):
    """Conv3x3 + BN + act (+ dropout) → Conv1x1 to ``num_classes``: auxiliary/output heads."""

    def __init__(
        self,
        in_channels: int,
        mid_channels: int,
        num_classes: int,
        act: str = "relu",
        dropout: float = 0.1,
        conv_bias: bool = False,
        cls_bias: bool = True,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, mid_channels, 3, padding=1, bias=conv_bias)
        self.bn = nn.BatchNorm2d(mid_channels)
        self.act = make_act(act)
        self.drop = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.cls = nn.Conv2d(mid_channels, num_classes, 1, bias=cls_bias)
