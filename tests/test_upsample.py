"""Every upsampler against a slow, plainly correct reference."""

import math

import pytest
import torch
import torch.nn.functional as F

from rtseg.layers import resize
from rtseg.upsample import (
    GAI,
    GUM,
    IFA,
    PAIRWISE,
    BilinearUpsample,
    FastAttention,
    create_upsampler,
    criss_cross_attention,
    fast_attention,
    guided_sample,
    nonlocal_attention,
)
from rtseg.upsample.cells import nearest_cells


def dense(q, k, v, allowed, scale=1.0, softmax=True):
    """Reference attention with an explicit n×n energy matrix. allowed: n×n bool or None."""
    b, d, h, w = q.shape
    qf, kf, vf = q.flatten(2), k.flatten(2), v.flatten(2)  # B×d×n
    e = torch.einsum("bdp,bdq->bpq", qf, kf) * scale
    if allowed is not None:
        e = e.masked_fill(~allowed, float("-inf"))
    a = torch.softmax(e, -1) if softmax else e
    return torch.einsum("bpq,bcq->bcp", a, vf).reshape(b, -1, h, w)


def test_criss_cross_matches_dense_masked_attention():
    q, k = torch.randn(2, 3, 5, 7).double(), torch.randn(2, 3, 5, 7).double()
    v = torch.randn(2, 4, 5, 7).double()
    rows = torch.arange(5).repeat_interleave(7)
    cols = torch.arange(7).repeat(5)
    allowed = (rows[:, None] == rows[None]) | (cols[:, None] == cols[None])  # self once
    ref = dense(q, k, v, allowed)
    torch.testing.assert_close(criss_cross_attention(q, k, v), ref)


def test_criss_cross_single_row_and_column():
    # H = 1: the column holds only the (masked) self position; the row carries everything.
    q, k, v = torch.randn(1, 2, 1, 4), torch.randn(1, 2, 1, 4), torch.randn(1, 3, 1, 4)
    out = criss_cross_attention(q, k, v)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, dense(q, k, v, None))


def test_nonlocal_matches_explicit_softmax():
    q, k, v = torch.randn(2, 8, 4, 6), torch.randn(2, 8, 4, 6), torch.randn(2, 5, 4, 6)
    ref = dense(q, k, v, None, scale=1 / math.sqrt(8))
    torch.testing.assert_close(nonlocal_attention(q, k, v), ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("mean", [True, False])
def test_fast_attention_matches_explicit_cosine_matrix(mean):
    q, k = torch.randn(2, 32, 6, 5).double(), torch.randn(2, 32, 6, 5).double()
    v = torch.randn(2, 16, 6, 5).double()
    qn, kn = F.normalize(q, dim=1), F.normalize(k, dim=1)
    ref = dense(qn, kn, v, None, softmax=False)
    if mean:
        ref = ref / 30
    torch.testing.assert_close(fast_attention(q, k, v, mean=mean), ref)


def test_fast_attention_mean_is_resolution_independent():
    # A constant map gives the same per-pixel output at any size with 1/n, not without it.
    blk = FastAttention(4, key_channels=2).eval()
    outs = {}
    for mean in (True, False):
        for size in [(4, 4), (16, 32)]:
            x = torch.ones(1, 4, *size)
            y = fast_attention(blk.query(x), blk.key(x), blk.value(x), mean=mean)
            outs[mean, size] = y[0, :, 0, 0]
    torch.testing.assert_close(outs[True, (4, 4)], outs[True, (16, 32)])
    torch.testing.assert_close(outs[False, (16, 32)], outs[False, (4, 4)] * 32)


def test_gai_starts_as_bilinear_with_projections():
    torch.manual_seed(1)
    gai = GAI(6, 5, 8).eval()
    coarse, fine = torch.randn(2, 6, 3, 4), torch.randn(2, 5, 7, 9)
    up = resize(coarse, (7, 9))
    expected = gai.fuse(torch.cat([gai.value_source(up), up], 1))
    torch.testing.assert_close(gai(coarse, fine), expected)
    # once γ moves, the fine guide changes the output (it enters through the query)
    gai.attention.gamma.data.fill_(0.5)
    out_a, out_b = gai(coarse, fine), gai(coarse, fine + 1)
    assert not torch.allclose(out_a, out_b)


def test_gai_recurrence_shares_weights_and_keeps_query():
    gai = GAI(4, 4, 16).eval()
    gai.attention.gamma.data.fill_(0.7)
    coarse, fine = torch.randn(1, 4, 3, 3), torch.randn(1, 4, 6, 6)
    up = resize(coarse, (6, 6))
    qsrc = gai.query_source(torch.cat([up, fine], 1))
    v = gai.value_source(up)
    for _ in range(2):
        q, k, val = gai.attention.query(qsrc), gai.attention.key(v), gai.attention.value(v)
        v = 0.7 * criss_cross_attention(q, k, val) + v
    torch.testing.assert_close(gai(coarse, fine), gai.fuse(torch.cat([v, up], 1)))
    assert gai.recurrence == 2


@pytest.mark.parametrize("out_size", [(8, 12), (7, 11), (3, 5), (13, 4)])
def test_guided_sample_zero_offsets_is_bilinear(out_size):
    coarse = torch.randn(2, 3, 4, 6)
    off = torch.zeros(2, 2, *out_size)
    ref = F.interpolate(coarse, out_size, mode="bilinear", align_corners=False)
    torch.testing.assert_close(guided_sample(coarse, off), ref, atol=1e-5, rtol=1e-5)


def test_guided_sample_one_pixel_offset_is_shifted_input():
    coarse = torch.randn(1, 2, 5, 6)
    out_size = (10, 12)
    # dx = +1 coarse pixel samples the input shifted left by one column
    off = torch.zeros(1, 2, *out_size)
    off[:, 0] = 1.0
    shifted = torch.cat([coarse[..., 1:], coarse[..., -1:]], dim=-1)
    ref = F.interpolate(shifted, out_size, mode="bilinear", align_corners=False)
    # the leftmost output column samples left of the first centre, where clamping differs
    torch.testing.assert_close(guided_sample(coarse, off)[..., 1:], ref[..., 1:],
                               atol=1e-5, rtol=1e-5)
    # dy = −1 samples the input shifted down by one row
    off = torch.zeros(1, 2, *out_size)
    off[:, 1] = -1.0
    shifted = torch.cat([coarse[:, :, :1], coarse[:, :, :-1]], dim=2)
    ref = F.interpolate(shifted, out_size, mode="bilinear", align_corners=False)
    torch.testing.assert_close(guided_sample(coarse, off)[:, :, :-1], ref[:, :, :-1],
                               atol=1e-5, rtol=1e-5)


def test_guided_sample_gradients():
    coarse = torch.randn(1, 2, 3, 4, dtype=torch.double, requires_grad=True)
    off = (0.3 * torch.randn(1, 2, 5, 7, dtype=torch.double)).requires_grad_()
    assert torch.autograd.gradcheck(guided_sample, (coarse, off))


@pytest.mark.parametrize("guidance", ["large_rf", "high_res", "fusion"])
def test_gum_starts_as_bilinear_and_learns_offsets(guidance):
    gum = GUM(6, 4, guidance=guidance)
    coarse, fine = torch.randn(2, 6, 4, 5), torch.randn(2, 4, 8, 10)
    out = gum(coarse, fine)
    ref = F.interpolate(coarse, (8, 10), mode="bilinear", align_corners=False)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    out.square().sum().backward()
    assert gum.offset.weight.grad.abs().sum() > 0  # the zero-initialised head can learn
    # a larger output size than the guide: the table is resized
    assert gum(coarse, fine, size=(16, 20)).shape == (2, 6, 16, 20)


def test_gum_rejects_projection_and_unknown_guidance():
    with pytest.raises(ValueError, match="must equal coarse_channels"):
        GUM(6, 4, channels=8)
    with pytest.raises(ValueError, match="guidance must be one of"):
        GUM(6, 4, guidance="magic")


def ifa_loop(ifa, feats, size):
    """The first IFA layer, one output pixel at a time, from the definition."""
    h_out, w_out = size
    w_first = ifa.first.weight.flatten(1)
    b = feats[0].shape[0]
    out = torch.zeros(b, w_first.shape[0], h_out, w_out, dtype=feats[0].dtype)
    for i in range(h_out):
        for j in range(w_out):
            parts = []
            for enc, x in zip(ifa.encodings, feats):
                h, w = x.shape[-2:]
                cy, cx = (i + 0.5) * h / h_out, (j + 0.5) * w / w_out  # in cell units
                iy, ix = min(int(cy), h - 1), min(int(cx), w - 1)
                delta = torch.tensor([2 * (cy - iy - 0.5), 2 * (cx - ix - 0.5)], dtype=x.dtype)
                pe = enc(delta)
                parts.append(torch.cat([pe.expand(b, -1), x[:, :, iy, ix]], dim=1))
            out[:, :, i, j] = torch.cat(parts, 1) @ w_first.t() + ifa.first.bias
    return out


@pytest.mark.parametrize("size", [(8, 12), (7, 11)])
def test_ifa_matches_per_pixel_loop(size):
    torch.manual_seed(3)
    ifa = IFA([3, 4, 5], 6, hidden=(8, 7)).double()
    with torch.no_grad():  # make the learnable frequencies non-separable
        for enc in ifa.encodings:
            enc.freqs.add_(torch.randn_like(enc.freqs))
    feats = [torch.randn(2, 3, 8, 12), torch.randn(2, 4, 4, 6), torch.randn(2, 5, 3, 5)]
    feats = [f.double() for f in feats]
    ref = ifa_loop(ifa, feats, size)
    for precompute in (True, False):
        ifa.precompute = precompute
        torch.testing.assert_close(ifa.first_layer(feats, size), ref)
    ifa.eval()
    ifa.precompute = True
    fast = ifa(feats, size)
    ifa.precompute = False
    torch.testing.assert_close(fast, ifa(feats, size))


def test_ifa_nearest_cell_agrees_with_grid_sample():
    # The official code picks the cell with grid_sample(mode="nearest"); ours with a floor.
    x = torch.arange(6.0).view(1, 1, 1, 6)
    for out_len in (12, 24, 10):
        idx, delta = nearest_cells(out_len, 6, x)
        xs = (torch.arange(out_len) * 2 + 1) / out_len - 1
        grid = torch.stack([xs, torch.zeros_like(xs)], -1).view(1, 1, out_len, 2)
        ref = F.grid_sample(x, grid, mode="nearest", align_corners=False).flatten()
        assert torch.equal(idx.float(), ref)
        assert (delta.abs() <= 1).all()


def test_ifa_arbitrary_output_size_and_level_check():
    ifa = IFA([4, 4], 3, hidden=(8,)).eval()
    feats = [torch.randn(1, 4, 6, 8), torch.randn(1, 4, 3, 4)]
    for size in [(6, 8), (13, 29), (2, 3)]:
        assert ifa(feats, size).shape == (1, 3, *size)
    with pytest.raises(ValueError, match="expects 2 levels"):
        ifa(feats[:1], (6, 8))


@pytest.mark.parametrize("name", sorted(PAIRWISE))
def test_pairwise_interface_and_gradients(name):
    up = create_upsampler(name, 8, 8, 8)
    for p in up.parameters():  # zero-initialised parts (γ, offset head) would hide gradients
        if p.abs().sum() == 0:
            p.data.normal_(0, 0.1)
    coarse = torch.randn(2, 8, 5, 6, requires_grad=True)
    fine = torch.randn(2, 8, 11, 13, requires_grad=True)
    out = up(coarse, fine)
    assert out.shape == (2, 8, 11, 13)
    out.square().mean().backward()
    assert coarse.grad.abs().sum() > 0
    if name != "bilinear" and getattr(up, "guided", True):  # unguided: bilinear, DySample, CARAFE
        assert fine.grad.abs().sum() > 0
    for pname, p in up.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, pname


def test_create_upsampler_errors():
    with pytest.raises(KeyError, match="ifa is multi-level"):
        create_upsampler("ifa", 8, 8, 8)
    with pytest.raises(KeyError, match="unknown pairwise upsampler"):
        create_upsampler("nearest", 8, 8, 8)
    with pytest.raises(ValueError, match="fine_channels"):
        create_upsampler("fast_attention", 8, 4, 8)
    assert isinstance(create_upsampler("bilinear", 3, 3, 4), BilinearUpsample)
