"""GUM, the Guided Upsampling Module (GUN, Mazzini 2018).

A guidance module predicts a *guidance offset table*: two channels (dx, dy) per output pixel, in
units of coarse pixels. The output samples the coarse map bilinearly at the plain-upsampling
source position of each output pixel plus its offset::

    O(i, j) = bilinear(coarse, x_j + dx(i, j), y_i + dy(i, j)),
    x_j = (j + 0.5)·w/W − 0.5   (cell centres, as ``F.interpolate(align_corners=False)``)

Outside the map the border value is repeated. The last conv of the guidance module starts at
zero, so an untrained GUM is exactly bilinear upsampling and learns to move its samples.

Guidance variants (``guidance=``):
    * ``large_rf``: from the coarse input (large receptive field); the table is predicted on the
      coarse grid and bilinearly resized to the output grid.
    * ``high_res``: from the fine guide, on its grid.
    * ``fusion``: both, ``ReLU(BN(1×1(fine)) + up(BN(3×3(coarse))))``; the best trade-off in
      the paper's summary (seeds/003).

The unofficial reference (Kaggle-TGS) used the ``align_corners=True`` grid and normalised by
(W−1)/2; rtseg keeps the cell-centre convention of the whole library.

**The exported graph** holds the guidance convolutions (BatchNorms folded by the exporter)
and, for the sampling, whatever the export asked for (``rtseg.export(...,
grid_sample=...)``, by target runtime): ``"op"`` (the default) an ONNX ``GridSample``
(opset ≥ 16; OpenVINO's kernel is fast), ``"gather"`` :func:`grid_sample_gather`: the source
positions from the traced sizes, four ``Gather`` of channels-last coarse rows and a four-weight
blend, ``grid_sample``'s bilinear / border / ``align_corners=False`` arithmetic written out
(ONNX Runtime's ``GridSample`` kernel is slow and has no int8 form). The eager paths (the
cached grid, the GEMM guidance layer) are not traced.
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..layers import (
    ConvBNAct,
    fast_formula,
    fast_inference,
    pointwise,
    resize,
    tracing_or_compiling,
)

GUIDANCE = ("large_rf", "high_res", "fusion")
# how guided_sample samples in inference: "op" F.grid_sample (ONNX GridSample), "gather" four
# gathers and a blend (grid_sample_gather); chosen per target runtime at export (grid_sample_as)
GRID_SAMPLE = ("op", "gather")
_SAMPLING = ["op"]


@contextlib.contextmanager
def grid_sample_as(kind: str) -> Iterator[None]:
    """Inside this block :func:`guided_sample` samples with ``kind`` in inference (eval, no
    gradient, outside :func:`rtseg.layers.reference_paths`; ``F.grid_sample`` otherwise):
    ``"op"`` is ``F.grid_sample`` (ONNX ``GridSample``, opset 16), ``"gather"`` is
    :func:`grid_sample_gather` (``Gather``, ``Mul``, ``Add``: no GridSample kernel needed,
    opset 11 suffices). ``rtseg.export(..., grid_sample=...)`` sets it for the trace."""
    if kind not in GRID_SAMPLE:
        raise ValueError(f"grid_sample must be one of {GRID_SAMPLE}, got {kind!r}")
    _SAMPLING.append(kind)
    try:
        yield
    finally:
        _SAMPLING.pop()

# (out_h, out_w, in_h, in_w, device, dtype) → (1×H×W×2 base grid, [2/w, 2/h] scale): building
# the grid costs a few passes over H×W×2 values (16 MB at 1024×2048) and the scale a small
# host-to-device copy per call on CUDA. A few entries suffice: a model uses one or two sizes.
_GRID_CACHE: OrderedDict[tuple, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()
_GRID_CACHE_SIZE = 4
_GRID_LOCK = threading.Lock()


def grid_cache_enabled(like: torch.Tensor) -> bool:
    """Whether :func:`guided_sample` may reuse a cached grid for tensors like ``like``.

    Never while tracing, exporting or compiling (a cached tensor would be baked into the graph
    as a constant of the traced size), nor for meta or wrapper tensors (fake tensors of
    ``torch.export``, the meta copies of :func:`rtseg.complexity.count_macs`).
    """
    return (type(like) is torch.Tensor and like.device.type != "meta"
            and not tracing_or_compiling())


def clear_grid_cache() -> None:
    """Drop every cached sampling grid (frees their memory)."""
    with _GRID_LOCK:
        _GRID_CACHE.clear()


def base_grid(
    out_size: tuple[int, int], in_size: tuple[int, int], like: torch.Tensor
) -> torch.Tensor:
    """Cell-centre sampling grid, 1×H×W×2 in ``grid_sample``'s normalised (x, y) order.

    Normalised coordinates do not depend on ``in_size`` under ``align_corners=False``; it is
    taken only to document the mapping. Sizes may be traced values: the grid follows them.
    """
    del in_size
    h, w = out_size
    ys = (torch.arange(h, device=like.device, dtype=like.dtype) * 2 + 1) / h - 1
    xs = (torch.arange(w, device=like.device, dtype=like.dtype) * 2 + 1) / w - 1
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy], dim=-1).unsqueeze(0)


def _cached_grid(
    out_size: tuple[int, int], in_size: tuple[int, int], like: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The base grid (1×H×W×2) and the offset scale ``[2/w, 2/h]`` (2,), from the cache."""
    key = (*out_size, *in_size, like.device, like.dtype)
    with _GRID_LOCK:
        hit = _GRID_CACHE.get(key)
        if hit is not None:
            _GRID_CACHE.move_to_end(key)
            return hit
    # plain tensors even when the first call runs under inference_mode: later autograd use is
    # then allowed
    with torch.inference_mode(False), torch.no_grad():
        h, w = in_size
        entry = (base_grid(out_size, in_size, like),
                 torch.tensor([2.0 / w, 2.0 / h], dtype=like.dtype).to(like.device))
    with _GRID_LOCK:
        _GRID_CACHE[key] = entry
        while len(_GRID_CACHE) > _GRID_CACHE_SIZE:
            _GRID_CACHE.popitem(last=False)
    return entry


def _size(n: int | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A size (or size arithmetic) as a 0-d tensor of ``like``'s dtype; a traced size (a 0-d
    tensor under ``torch.jit.trace``) stays traced, so the graph follows the input size."""
    if isinstance(n, torch.Tensor):
        return n.to(device=like.device, dtype=like.dtype)
    return torch.tensor(n, device=like.device, dtype=like.dtype)


def grid_sample_gather(x: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """``F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)``
    written out as four gathers and a blend (export-safe: no ``GridSample`` in the graph).

    x: B×C×h×w; grid: B×H×W×2, normalised (x, y). As ``grid_sample``: the source position is
    ``((g + 1)·w − 1)/2`` (likewise y), clamped to [0, w − 1] (border padding);
    ``x0 = floor(x)``, ``x1 = min(x0 + 1, w − 1)`` and the output is the sum of the four taps
    weighted ``(1 − fx)(1 − fy)``, ``fx(1 − fy)``, ``(1 − fx)fy``, ``fx·fy`` (``fx = x − x0``;
    a tap clamped onto the border has weight 0 there, where ``grid_sample`` skips it). The
    taps are gathered from channels-last rows of ``x`` (each gathered element a contiguous
    C-vector), blended, and returned as B×C×H×W in ``grid``'s dtype. Every size is read
    from the tensors: one graph for any size.
    """
    b, c, h, w = x.shape
    out_h, out_w = grid.shape[1], grid.shape[2]
    px = torch.minimum(torch.clamp(((grid[..., 0] + 1) * w - 1) / 2, min=0), _size(w - 1, grid))
    py = torch.minimum(torch.clamp(((grid[..., 1] + 1) * h - 1) / 2, min=0), _size(h - 1, grid))
    x0, y0 = px.floor(), py.floor()  # B×H×W
    fx, fy = (px - x0).unsqueeze(-1), (py - y0).unsqueeze(-1)  # B×H×W×1
    x0, y0 = x0.long(), y0.long()
    x1 = torch.minimum(x0 + 1, _size(w - 1, x0))
    y1 = torch.minimum(y0 + 1, _size(h - 1, y0))
    base = (torch.arange(b, device=x.device) * (h * w)).view(-1, 1, 1)  # batch offsets
    rows = x.to(grid.dtype).permute(0, 2, 3, 1).reshape(-1, c)  # (B·h·w)×C

    def tap(yi: torch.Tensor, xi: torch.Tensor) -> torch.Tensor:
        return rows.index_select(0, (base + yi * w + xi).flatten()).view(b, out_h, out_w, c)

    gx, gy = 1 - fx, 1 - fy
    out = (tap(y0, x0) * (gx * gy) + tap(y0, x1) * (fx * gy) + tap(y1, x0) * (gx * fy)
           + tap(y1, x1) * (fx * fy))
    return out.permute(0, 3, 1, 2)


def guided_sample(coarse: torch.Tensor, offsets: torch.Tensor,
                  module: nn.Module | None = None) -> torch.Tensor:
    """Sample ``coarse`` (B×C×h×w) on the output grid of ``offsets`` (B×2×H×W, coarse pixels).

    Returns B×C×H×W. Zero offsets give ``F.interpolate(coarse, (H, W), mode="bilinear",
    align_corners=False)``. Sampling positions are computed in at least float32 (in half
    precision neighbouring cell centres of a 2048-wide grid are not distinguishable), so half
    inputs are sampled in float32 and the result cast back. The base grid is cached per size,
    device and dtype (see :func:`grid_cache_enabled`); traced graphs build it from the traced
    sizes, so exported graphs stay valid at any size. Inside :func:`grid_sample_as` ``"gather"``
    the sampling is :func:`grid_sample_gather` when :func:`rtseg.layers.fast_formula` allows
    it (for ``module``, the calling GUM: eval mode, no gradient, not under
    :func:`rtseg.layers.reference_paths`), else ``F.grid_sample``.
    """
    h, w = coarse.shape[-2:]
    dtype = torch.promote_types(torch.promote_types(offsets.dtype, coarse.dtype), torch.float32)
    off = offsets.permute(0, 2, 3, 1).to(dtype)  # B×H×W×2, (dx, dy) in coarse pixels
    out_size = (offsets.shape[-2], offsets.shape[-1])
    if grid_cache_enabled(offsets):
        grid0, scale = _cached_grid(out_size, (h, w), off)
        grid = torch.addcmul(grid0, off, scale)  # one fused pass
    else:
        grid0 = base_grid(out_size, (h, w), off)
        if torch.jit.is_tracing():  # ONNX export: [2/w, 2/h] from the traced shape as one
            # float vector (OpenCV DNN rejects the 0-d integer arithmetic of the form below)
            wh = torch._shape_as_tensor(coarse)[2:].flip(0).to(dtype)
            grid = grid0 + off * (2.0 / wh)
        else:  # torch.export / compile (symbolic sizes), meta tensors
            grid = grid0 + torch.cat([off[..., :1] * (2.0 / w), off[..., 1:] * (2.0 / h)], -1)
    if _SAMPLING[-1] == "gather" and fast_formula(module, coarse, offsets):
        return grid_sample_gather(coarse, grid).to(coarse.dtype)
    out = F.grid_sample(coarse.to(dtype), grid, mode="bilinear", padding_mode="border",
                        align_corners=False)
    return out.to(coarse.dtype)


class GUM(nn.Module):
    """Guided Upsampling Module.

    Args:
        coarse_channels: C of the map to upsample (features, or class scores in GUN).
        fine_channels: C_f of the high-resolution guide.
        channels: output channels; must equal ``coarse_channels`` (GUM moves samples, it does
            not project). ``None`` means ``coarse_channels``.
        guidance: "large_rf", "high_res" or "fusion".
        hidden: width of the guidance module.
        guide_channels: channels of the large-receptive-field guide when it is not the coarse
            map itself (GUN guides the upsampling of class scores with deep features).

    Forward: ``coarse`` B×C×h×w, ``fine`` B×C_f×H_f×W_f, optional ``size`` (H, W), by default
    the fine grid, optional ``coarse_guide`` (B×guide_channels×h'×w') → B×C×H×W. The offset
    table is predicted on the fine grid and resized to ``size`` when they differ (offsets are
    in coarse pixels, so resizing keeps their meaning).
    """

    needs_grid_sample = True  # ONNX GridSample: opset >= 16 (rtseg.export checks)
    can_gather = True  # no GridSample when exported with grid_sample="gather"

    def __init__(
        self,
        coarse_channels: int,
        fine_channels: int,
        channels: int | None = None,
        guidance: str = "fusion",
        hidden: int = 64,
        guide_channels: int | None = None,
    ) -> None:
        super().__init__()
        if guidance not in GUIDANCE:
            raise ConfigError(f"guidance must be one of {GUIDANCE}, got {guidance!r}")
        if channels not in (None, coarse_channels):
            raise ValueError(
                f"GUM resamples its input: channels ({channels}) must equal coarse_channels "
                f"({coarse_channels})"
            )
        self.guidance = guidance
        if guidance in ("large_rf", "fusion"):
            self.from_coarse = ConvBNAct(guide_channels or coarse_channels, hidden, 3,
                                         act="relu" if guidance == "large_rf" else None)
        if guidance in ("high_res", "fusion"):
            k = 3 if guidance == "high_res" else 1
            self.from_fine = ConvBNAct(fine_channels, hidden, k,
                                       act="relu" if guidance == "high_res" else None)
        self.refine = ConvBNAct(hidden, hidden, 3)
        self.offset = nn.Conv2d(hidden, 2, 3, padding=1)
        nn.init.zeros_(self.offset.weight)
        nn.init.zeros_(self.offset.bias)

    def offsets(self, coarse: torch.Tensor, fine: torch.Tensor) -> torch.Tensor:
        """The guidance offset table on the fine grid: B×2×H_f×W_f, (dx, dy) in coarse pixels.

        ``coarse`` here is the large-receptive-field guide (the coarse map by default)."""
        size = fine.shape[-2:]
        if self.guidance == "large_rf":
            return resize(self.offset(self.refine(self.from_coarse(coarse))), size)
        if self.guidance == "high_res":
            g = self.from_fine(fine)
        elif fast_inference(self, coarse, fine):  # the 1×1 layer as a GEMM (see pointwise)
            g = pointwise([fine.permute(0, 2, 3, 1)], self.from_fine).permute(0, 3, 1, 2)
            g = F.relu(g.add_(resize(self.from_coarse(coarse), size)), inplace=True)
        else:
            g = F.relu(self.from_fine(fine) + resize(self.from_coarse(coarse), size), inplace=True)
        return self.offset(self.refine(g))

    def forward(
        self,
        coarse: torch.Tensor,
        fine: torch.Tensor,
        size: tuple[int, int] | None = None,
        coarse_guide: torch.Tensor | None = None,
    ) -> torch.Tensor:
        off = self.offsets(coarse if coarse_guide is None else coarse_guide, fine)
        if size is not None:
            off = resize(off, size)
        return guided_sample(coarse, off, self)
