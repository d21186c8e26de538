"""Slow per-pixel references of the reassembly upsamplers (imported by their tests)."""

import math

import torch

COARSE = (4, 5)
FINE_SIZES = [(7, 9), (8, 10), (9, 11)]  # 2h − 1 (ResNet), 2h, 2h + 1 (EfficientNet-Lite)


def src(i: int, out_len: int, in_len: int) -> int:
    """The coarse cell containing the centre of output cell i."""
    return min(math.floor((i + 0.5) * in_len / out_len), in_len - 1)


def window_taps(big_h, big_w, h, w, k):
    """(i, j, t, y, x) for every output cell (i, j) of a big_h×big_w grid and every tap
    t = a·k + b of the k×k window around its source cell that falls inside the h×w map."""
    r = k // 2
    for i in range(big_h):
        for j in range(big_w):
            u, v = src(i, big_h, h), src(j, big_w, w)
            for a in range(k):
                for bb in range(k):
                    y, x = u + a - r, v + bb - r
                    if 0 <= y < h and 0 <= x < w:
                        yield i, j, a * k + bb, y, x


def loop_reassemble(value, weights, k):
    """out(i, j) = Σ_{a,b} w_{a·k+b}(i, j) · value(u_i + a − r, v_j + b − r), zero outside."""
    b, c, h, w = value.shape
    big_h, big_w = weights.shape[-2:]
    out = torch.zeros(b, c, big_h, big_w, dtype=value.dtype)
    for i, j, t, y, x in window_taps(big_h, big_w, h, w, k):
        out[:, :, i, j] += weights[:, t, i, j, None] * value[:, :, y, x]
    return out


def loop_similarity(query, key, k):
    """logit_t(i, j) = query(i, j) · key(window tap t around the source cell), 0 outside."""
    b, _, big_h, big_w = query.shape
    h, w = key.shape[-2:]
    out = torch.zeros(b, k * k, big_h, big_w, dtype=query.dtype)
    for i, j, t, y, x in window_taps(big_h, big_w, h, w, k):
        out[:, t, i, j] = (query[:, :, i, j] * key[:, :, y, x]).sum(1)
    return out


def bilinear_border(x, py, px):
    """x (B×C×h×w) at the continuous position (py, px) in cell-index units, border clamped."""
    h, w = x.shape[-2:]
    py, px = min(max(py, 0.0), h - 1.0), min(max(px, 0.0), w - 1.0)
    y0, x0 = math.floor(py), math.floor(px)
    y1, x1 = min(y0 + 1, h - 1), min(x0 + 1, w - 1)
    fy, fx = py - y0, px - x0
    return ((1 - fy) * ((1 - fx) * x[:, :, y0, x0] + fx * x[:, :, y0, x1])
            + fy * ((1 - fx) * x[:, :, y1, x0] + fx * x[:, :, y1, x1]))
