"""IFA, Implicit Feature Alignment: an MLP reads every level at a query coordinate.

For each output pixel q (a cell centre of the requested H×W grid) and each level l:
    * z_l: the feature of the level-l cell that contains q (nearest cell);
    * δ_l = (q − centre of that cell) in units where ±1 is the cell border, as (δy, δx);
    * γ_l(δ_l) = [δ, sin(Mδ), cos(Mδ)]: a sinusoidal encoding with learnable frequencies M
      (12×2, initialised to 6 frequencies 2^linspace(0, 6, 6) per axis, no π), 26 values.
The MLP maps ``cat_l [γ_l(δ_l), z_l]`` to the output (official: 1128 → 512 → 256 → 256 → K,
1×1 layers with BN and ReLU).

The first linear layer is split per level and per part: ``W·cat = Σ_l (W_l^pos γ_l + W_l^feat
z_l)``. Since z_l is a *selection* of level-l pixels, ``W_l^feat z_l`` equals selecting from
``W_l^feat F_l`` computed on the low-resolution level: the same function at a fraction of the
cost (``precompute=True``, the default). ``precompute=False`` runs the direct formula.

When the output grid is a level's own grid (level 1 in the networks) that level's δ is 0
everywhere, so its frequencies get no gradient: the official network has the same property.

Differences from the official code: no hard-coded ``.cuda()``; any output size can be asked
for; the nearest cell is ``floor((j + 0.5)·w/W)`` (the official ``grid_sample(nearest)`` rounds
half to even, which differs only for a query exactly on a cell border); the buggy local
ensemble is not reproduced.

Inference (``precompute=True``, eval, no gradient) takes :meth:`IFA.forward_rows` in eager
PyTorch (broadcast adds for levels that divide the grid, a table of distinct offsets) and
:meth:`IFA.forward_lines` when traced or exported. **The exported graph holds** channels-last
rows: each level's ``W_l^feat F_l`` as a ``MatMul`` on its own grid (the BatchNorm after the
first layer folded in: the plain graph kept a ``BatchNormalization``), sampled at its nearest
cells by two ``Gather`` along H and W that copy contiguous vectors of ``hidden[0]`` values
(the plain graph's gathers move single values along the last axis of NCHW maps), the levels
summed; the position term as one ``Gemm`` over the H×W grid's codes, computed once whatever
the batch (the plain graph expands the codes to the batch), with the codes of a level on the
output grid (δ = 0) folded into the bias; then the MLP as ``Gemm`` + ``Relu`` and one
``Transpose`` back to NCHW. Broadcast adds need a level that divides the grid, which a
dynamic graph cannot know, so the sampling stays a gather (see :meth:`IFA.forward_lines`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..layers import bn_affine, fast_formula, fast_inference, linear_rows, sizes_are_static
from .cells import nearest_cells


class SpatialEncoding(nn.Module):
    """γ(δ) = [δ, sin(Mδ), cos(Mδ)] for δ ∈ R², M learnable (2F)×2; in ...×2 → ...×(2+4F)."""

    def __init__(self, num_freqs: int = 6, max_log2: float = 6.0, learnable: bool = True):
        super().__init__()
        freqs = torch.logspace(0, max_log2, num_freqs, base=2.0)
        m = torch.zeros(2 * num_freqs, 2)
        m[:num_freqs, 0] = freqs
        m[num_freqs:, 1] = freqs
        self.freqs = nn.Parameter(m, requires_grad=learnable)
        self.out_dim = 2 + 4 * num_freqs

    def forward(self, delta: torch.Tensor) -> torch.Tensor:
        y = delta @ self.freqs.t()
        return torch.cat([delta, torch.sin(y), torch.cos(y)], dim=-1)


def relative_encoding(
    enc: SpatialEncoding, dy: torch.Tensor, dx: torch.Tensor
) -> torch.Tensor:
    """γ of the (δy, δx) grid: H and W vectors → 1×D×H×W."""
    grid = torch.stack(torch.meshgrid(dy, dx, indexing="ij"), dim=-1)  # H×W×2
    return enc(grid).permute(2, 0, 1).unsqueeze(0)


def gather_cells(x: torch.Tensor, iy: torch.Tensor, ix: torch.Tensor) -> torch.Tensor:
    """``x[:, :, iy][:, :, :, ix]``: B×C×h×w → B×C×len(iy)×len(ix).

    Columns are selected first, on the small map: ``index_select`` along the last dimension is
    the slow one on CPU, so it runs on h×len(ix) values instead of len(iy)×len(ix).
    """
    return x.index_select(3, ix).index_select(2, iy)


class IFA(nn.Module):
    """Implicit Feature Alignment decoder.

    Args:
        in_channels: channels of each level, finest first (official: 4 × 256).
        out_channels: MLP output (K logits in the official network; features in rtseg's FPN).
        hidden: MLP widths (official: 512, 256, 256).
        num_freqs: frequencies per axis of the encoding (official: 6, i.e. 24 + 2 values).
        precompute: apply the first layer on the low-resolution levels before sampling.

    Forward: ``features`` list of B×C_l×h_l×w_l, ``size`` (H, W) → B×out×H×W.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        out_channels: int,
        hidden: Sequence[int] = (512, 256, 256),
        num_freqs: int = 6,
        precompute: bool = True,
    ) -> None:
        super().__init__()
        self.in_channels = tuple(in_channels)
        self.precompute = precompute
        self.encodings = nn.ModuleList(SpatialEncoding(num_freqs) for _ in in_channels)
        self.pos_dim = self.encodings[0].out_dim
        in_dim = sum(self.pos_dim + c for c in in_channels)
        self.first = nn.Conv2d(in_dim, hidden[0], 1)
        layers: list[nn.Module] = [nn.BatchNorm2d(hidden[0]), nn.ReLU(inplace=True)]
        for cin, cout in zip(hidden[:-1], hidden[1:], strict=True):
            layers += [nn.Conv2d(cin, cout, 1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
        layers.append(nn.Conv2d(hidden[-1], out_channels, 1))
        self.rest = nn.Sequential(*layers)

    def _check_levels(self, features: Sequence[torch.Tensor]) -> None:
        if len(features) != len(self.in_channels):
            raise ValueError(f"IFA expects {len(self.in_channels)} levels, got {len(features)}")

    def _split_first(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per level, the (position, feature) column blocks of the first layer's weight."""
        w = self.first.weight.flatten(1)
        blocks, start = [], 0
        for c in self.in_channels:
            blocks.append((w[:, start:start + self.pos_dim],
                           w[:, start + self.pos_dim:start + self.pos_dim + c]))
            start += self.pos_dim + c
        return blocks

    def first_layer(self, features: Sequence[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        """The first linear layer's output on the H×W grid, B×hidden[0]×H×W."""
        self._check_levels(features)
        h, w = size
        like = features[0]
        if not self.precompute:
            parts = []
            for enc, x in zip(self.encodings, features, strict=True):
                iy, dy = nearest_cells(h, x.shape[-2], like)
                ix, dx = nearest_cells(w, x.shape[-1], like)
                pe = relative_encoding(enc, dy, dx).expand(x.shape[0], -1, -1, -1)
                parts += [pe, gather_cells(x, iy, ix)]
            return self.first(torch.cat(parts, dim=1))
        out: torch.Tensor | None = None
        encodings, pos_weights = [], []
        for enc, x, (w_pos, w_feat) in zip(self.encodings, features, self._split_first(),
                                           strict=True):
            iy, dy = nearest_cells(h, x.shape[-2], like)
            ix, dx = nearest_cells(w, x.shape[-1], like)
            encodings.append(relative_encoding(enc, dy, dx))  # 1×D×H×W
            pos_weights.append(w_pos)
            low = F.conv2d(x, w_feat[:, :, None, None])  # on the level's own grid
            # a level already on the output grid (the finest, in the networks) keeps every cell
            z = low if tuple(x.shape[-2:]) == (h, w) else gather_cells(low, iy, ix)
            out = z if out is None else out.add_(z)
        # the position terms of all levels and the bias in one 1×1 conv, B×hidden×H×W: the
        # encoding is expanded to the batch first, so that runtimes fusing the addition into
        # the convolution (OpenVINO) see two tensors of one shape
        codes = torch.cat(encodings, dim=1).expand(out.shape[0], -1, -1, -1)
        pe = F.conv2d(codes, torch.cat(pos_weights, dim=1)[:, :, None, None], self.first.bias)
        return out.add_(pe)

    def forward(self, features: Sequence[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        if self.precompute and fast_inference(self, *features):
            return self.forward_rows(features, size).permute(0, 3, 1, 2)
        if self.precompute and fast_formula(self, *features):
            return self.forward_lines(features, size).permute(0, 3, 1, 2)
        return self.rest(self.first_layer(features, size))

    def _folded_first(self) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], torch.Tensor]:
        """:meth:`_split_first` and the first layer's bias with the BatchNorm after it folded
        in (when it is still there: :func:`rtseg.deploy.fuse.fold_batchnorm` may have
        folded it already)."""
        blocks, bias = self._split_first(), self.first.bias
        bn = self.rest[0]
        if isinstance(bn, nn.BatchNorm2d):
            scale, shift = bn_affine(bn)
            blocks = [(wp * scale[:, None], wf * scale[:, None]) for wp, wf in blocks]
            bias = bias * scale + shift
        return blocks, bias

    def forward_lines(self, features: Sequence[torch.Tensor], size: tuple[int, int]
                      ) -> torch.Tensor:
        """:meth:`forward`, export-safe (what an ONNX export records): B×H×W×out rows.

        As :meth:`forward_rows`, every 1×1 layer is a product on channels-last rows with the
        BatchNorm after it folded in (``Gemm`` / ``MatMul`` in a graph), and each level's features
        go through the first layer on the level's own grid. A level is then sampled at its
        nearest cells by two gathers along H and W of channels-last rows, so each gathered
        element is a contiguous vector of ``hidden[0]`` values (the reference gathers single
        values along the last axis of NCHW maps, and its position layer runs on codes
        expanded to the batch). The position term is computed once for the H×W grid, whatever
        the batch; a level on the output grid has δ = 0 everywhere, so its term is a constant
        folded into the bias. Out of place, no caches, every size read from the tensors: one
        graph for any size. The one size-dependent choice is the reference's own (a level on
        the output grid is not sampled; see ``rtseg.deploy.export``).

        A graph for one size (inside :func:`rtseg.layers.static_sizes`) adds the levels whose
        grids divide the output's by broadcasting instead, summed coarse to fine on their own
        grids first (:func:`_add_levels`: one full-size addition), and the position term as a
        constant table of one period of offsets, tiled; a graph for any size cannot branch on
        the size, so it gathers. The eager path's table of distinct offsets is not used: it
        needs ONNX ``Unique``, which OpenVINO 2026.4's CPU plugin fails to run once the graph
        is reshaped to a static size (the whole H×W grid costs 78·C multiply-adds a pixel in
        the networks: 26 codes for each level off the grid). The MLP runs on N×C rows, so the
        graph holds ``Gemm`` → ``Relu`` → ``Gemm`` (each ``Relu`` fused by ONNX Runtime).
        """
        self._check_levels(features)
        h, w = size
        blocks, bias = self._folded_first()
        like = features[0]
        static = sizes_are_static()
        out: torch.Tensor | None = None
        offsets, w_codes, broadcast = [], [], []
        for enc, x, (w_pos, w_feat) in zip(self.encodings, features, blocks, strict=True):
            z = linear_rows(x.permute(0, 2, 3, 1), w_feat)  # B×h_l×w_l×hidden, own grid
            if tuple(x.shape[-2:]) == (h, w):  # δ = 0: γ = [0, 0, sin 0 …, cos 0 …]
                bias = bias + w_pos[:, w_pos.shape[1] // 2 + 1:].sum(1)
                out = z if out is None else out + z
                continue
            iy, dy = nearest_cells(h, x.shape[-2], like)
            ix, dx = nearest_cells(w, x.shape[-1], like)
            if static and out is not None and h % x.shape[-2] == 0 and w % x.shape[-1] == 0:
                broadcast.append(z)
            else:
                z = z.index_select(2, ix).index_select(1, iy)
                out = z if out is None else out + z
            offsets.append((enc, dy, dx))
            w_codes.append(w_pos)
        if broadcast:
            out = _add_levels(out, broadcast)
        period = _period((h, w), features) if static and offsets else None
        if period is not None:  # the offsets repeat every P×Q cells
            codes = [enc(torch.stack(torch.meshgrid(dy[:period[0]], dx[:period[1]],
                                                    indexing="ij"), dim=-1))
                     for enc, dy, dx in offsets]
            table = linear_rows(torch.cat(codes, dim=-1), torch.cat(w_codes, dim=1), bias)
            out = _broadcast_add(out, table.unsqueeze(0), tile=True)
        elif offsets:  # H×W×C, added to every image of the batch
            codes = [enc(torch.stack(torch.meshgrid(dy, dx, indexing="ij"), dim=-1))
                     for enc, dy, dx in offsets]
            out = out + linear_rows(torch.cat(codes, dim=-1), torch.cat(w_codes, dim=1), bias)
        else:
            out = out + bias
        rows = _mlp_rows(F.relu(out).reshape(-1, out.shape[-1]), list(self.rest)[2:],
                         export_safe=True)
        return rows.view(*out.shape[:-1], rows.shape[-1])

    def forward_rows(self, features: Sequence[torch.Tensor], size: tuple[int, int]
                     ) -> torch.Tensor:
        """:meth:`forward` for inference, channels-last: B×H×W×out.

        Every 1×1 layer is a GEMM on B×H×W×C rows with the BatchNorm after it folded in. A
        level whose grid divides the output grid evenly is added by broadcasting each cell
        over its r_y×r_x block (no gathered copy); others are gathered. The position term
        depends only on each row's and each column's offsets to the cells of every level:
        it is computed once per distinct pattern (8×8 when every level divides the output
        evenly, then added by broadcasting) instead of by a 1×1 layer over B×(4·26)×H×W codes.
        """
        self._check_levels(features)
        h, w = size
        blocks, bias = self._folded_first()
        out = None
        for x, (_, w_feat) in zip(features, blocks, strict=True):
            z = F.linear(x.permute(0, 2, 3, 1), w_feat)  # B×h_l×w_l×hidden, level's own grid
            out = _add_nearest(out, z, (h, w))
        like = features[0]
        cells = [(nearest_cells(h, x.shape[-2], like), nearest_cells(w, x.shape[-1], like))
                 for x in features]
        period = (math.lcm(*(h // x.shape[-2] for x in features)),
                  math.lcm(*(w // x.shape[-1] for x in features)))
        even = all(h % x.shape[-2] == 0 and w % x.shape[-1] == 0 for x in features)
        if even and h % period[0] == 0 and w % period[1] == 0:
            dys = torch.stack([dy[:period[0]] for (_, dy), _ in cells])
            dxs = torch.stack([dx[:period[1]] for _, (_, dx) in cells])
            table = self._position_table(dys, dxs, [wp for wp, _ in blocks], bias)
            out = _add_nearest(out, table.unsqueeze(0), (h, w), tile=True)
        else:
            dys = torch.stack([dy for (_, dy), _ in cells])
            dxs = torch.stack([dx for _, (_, dx) in cells])
            uy, row_class = torch.unique(dys, dim=1, return_inverse=True)  # L×U_y, H
            ux, col_class = torch.unique(dxs, dim=1, return_inverse=True)  # L×U_x, W
            table = self._position_table(uy, ux, [wp for wp, _ in blocks], bias)
            out.add_(table[row_class[:, None], col_class[None, :]])
        return _mlp_rows(out.relu_(), list(self.rest)[2:])

    def _position_table(self, dys: torch.Tensor, dxs: torch.Tensor,
                        w_pos: Sequence[torch.Tensor], bias: torch.Tensor) -> torch.Tensor:
        """``Σ_l W_l^pos γ_l(δy_l, δx_l) + bias`` for L×P row and L×Q column offsets: P×Q×C."""
        codes = [relative_encoding(enc, dy, dx)
                 for enc, dy, dx in zip(self.encodings, dys, dxs, strict=True)]
        return F.linear(torch.cat(codes, dim=1)[0].permute(1, 2, 0), torch.cat(w_pos, 1), bias)


def _add_nearest(out: torch.Tensor | None, z: torch.Tensor, size: tuple[int, int],
                 tile: bool = False) -> torch.Tensor:
    """``out + z`` sampled at the nearest cell of the H×W grid (``out`` None: the sample).

    z: B×h×w×C rows. A grid dividing H×W evenly is broadcast over its r_y×r_x blocks (with
    ``tile``, z is instead repeated as a tile of h×w over the grid); others are gathered.
    """
    (h, w), (hz, wz) = size, z.shape[1:3]
    if (hz, wz) == (h, w):
        return z if out is None else out.add_(z)
    if h % hz or w % wz:
        iy, _ = nearest_cells(h, hz, z)
        ix, _ = nearest_cells(w, wz, z)
        z = z.index_select(2, ix).index_select(1, iy)
        return z if out is None else out.add_(z)
    ry, rx = h // hz, w // wz
    if out is None:
        out = z.new_zeros(z.shape[0], h, w, z.shape[-1])
    b, c = out.shape[0], out.shape[-1]
    if tile:  # period pattern: out[:, i, j] += z[:, i % hz, j % wz]
        out.view(b, ry, hz, rx, wz, c).add_(z.view(-1, 1, hz, 1, wz, c))
    else:  # nearest cell: out[:, i, j] += z[:, i // ry, j // rx]
        out.view(b, hz, ry, wz, rx, c).add_(z.view(-1, hz, 1, wz, 1, c))
    return out


def _period(size: tuple[int, int], features: Sequence[torch.Tensor]) -> tuple[int, int] | None:
    """(P, Q) after which every level's row and column offsets repeat, when every level's grid
    divides the H×W grid evenly and so do P and Q; else None."""
    (h, w), shapes = size, [tuple(x.shape[-2:]) for x in features]
    if any(h % hz or w % wz for hz, wz in shapes):
        return None
    period = (math.lcm(*(h // hz for hz, _ in shapes)), math.lcm(*(w // wz for _, wz in shapes)))
    return period if h % period[0] == 0 and w % period[1] == 0 else None


def _add_levels(out: torch.Tensor, levels: Sequence[torch.Tensor]) -> torch.Tensor:
    """``out`` (B×H×W×C) plus every level in ``levels`` (B×h_l×w_l×C, each grid dividing
    H×W) at its nearest cells, by broadcasting. The levels are summed coarse to fine on their
    own grids first, wherever a finer grid divides by the next coarser one (the nearest cell
    of a nearest cell is then the nearest cell), so ``out``'s grid sees one addition, not one
    per level (the networks' IFA: one instead of three)."""
    levels = sorted(levels, key=lambda z: z.shape[1] * z.shape[2], reverse=True)
    acc = levels[-1]
    for z in reversed(levels[:-1]):
        if z.shape[1] % acc.shape[1] or z.shape[2] % acc.shape[2]:
            out, acc = _broadcast_add(out, acc), z
        else:
            acc = _broadcast_add(z, acc)
    return _broadcast_add(out, acc)


def _broadcast_add(out: torch.Tensor, z: torch.Tensor, tile: bool = False) -> torch.Tensor:
    """Out-of-place :func:`_add_nearest` for a grid dividing ``out``'s (B×H×W×C): ``z``
    (B'×h×w×C, B' = B or 1) broadcast over its r_y×r_x blocks, or with ``tile`` repeated as an
    h×w tile; a reshape and one broadcasting ``Add`` in a graph, no gathered copy."""
    b, h, w, c = out.shape
    hz, wz = z.shape[1:3]
    ry, rx = h // hz, w // wz
    if tile:  # out[:, i, j] + z[:, i % hz, j % wz]
        summed = out.reshape(b, ry, hz, rx, wz, c) + z.reshape(-1, 1, hz, 1, wz, c)
    else:  # out[:, i, j] + z[:, i // ry, j // rx]
        summed = out.reshape(b, hz, ry, wz, rx, c) + z.reshape(-1, hz, 1, wz, 1, c)
    return summed.reshape(b, h, w, c)


def _mlp_rows(x: torch.Tensor, layers: Sequence[nn.Module], export_safe: bool = False
              ) -> torch.Tensor:
    """``nn.Sequential(*layers)`` (1×1 Conv2d, each optionally followed by BatchNorm2d and
    ReLU; eval mode) on channels-last rows (…×C), every BatchNorm folded into its GEMM.
    ``export_safe``: N×C rows, out of place, so that a graph holds ``Gemm`` → ``Relu`` →
    ``Gemm`` with no ``Reshape`` between (ONNX Runtime fuses each ``Relu`` into its ``Gemm``)."""
    layers = [m for m in layers if not isinstance(m, nn.Identity)]  # BNs already folded
    i = 0
    while i < len(layers):
        conv = layers[i]
        w, b = conv.weight.flatten(1), conv.bias
        i += 1
        if i < len(layers) and isinstance(layers[i], nn.BatchNorm2d):
            scale, shift = bn_affine(layers[i])
            w, b = w * scale[:, None], b * scale + shift
            i += 1
        x = F.linear(x, w, b)
        if i < len(layers) and isinstance(layers[i], nn.ReLU):
            x = F.relu(x) if export_safe else x.relu_()
            i += 1
    return x


__all__ = ["IFA", "SpatialEncoding"]
