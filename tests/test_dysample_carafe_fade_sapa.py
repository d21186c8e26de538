"""DySample, CARAFE, FADE (+Lite) and SAPA against slow per-pixel references, their counts and
errors (issue 28)."""

import pytest
import torch
import torch.nn.functional as F

from rtseg.complexity import count_call_macs, count_params
from rtseg.upsample import CARAFE, FADE, SAPA, DySample, create_upsampler
from tests.upsample_loops import (
    COARSE,
    FINE_SIZES,
    bilinear_border,
    loop_reassemble,
    loop_similarity,
    src,
)

# --- DySample -------------------------------------------------------------------------------


def loop_dysample(dys: DySample, x: torch.Tensor) -> torch.Tensor:
    """The official formulation at H = 2h, one output pixel and group at a time: the conv output
    read in its [x/y][group][sub-pixel] layout (``lp``), 0.25 scope, bilinear at the cell
    centre plus the offset, border padding."""
    b, c, h, w = x.shape
    s, g = dys.scale, dys.groups
    o = dys.offset(x) * 0.25
    out = torch.zeros(b, c, s * h, s * w, dtype=x.dtype)
    cg = c // g
    for i in range(s * h):
        for j in range(s * w):
            sub = (i % s) * s + j % s
            for gi in range(g):
                dx = o[:, gi * s * s + sub, i // s, j // s]
                dy = o[:, (g + gi) * s * s + sub, i // s, j // s]
                for bi in range(b):
                    py = (i + 0.5) / s - 0.5 + float(dy[bi])
                    px = (j + 0.5) / s - 0.5 + float(dx[bi])
                    xs = x[bi:bi + 1, gi * cg:(gi + 1) * cg]
                    out[bi, gi * cg:(gi + 1) * cg, i, j] = bilinear_border(xs, py, px)[0]
    return out


def test_dysample_lp_matches_per_pixel_loop():
    torch.manual_seed(0)
    dys = DySample(8, 8, groups=2).double()
    torch.nn.init.normal_(dys.offset.weight, 0, 1.0)  # offsets of a few coarse pixels
    x = torch.randn(2, 8, 3, 4).double()
    torch.testing.assert_close(dys(x, torch.zeros(2, 8, 6, 8)), loop_dysample(dys, x))


@pytest.mark.parametrize("size", FINE_SIZES)
@pytest.mark.parametrize("style,dyscope", [("lp", False), ("lp", True), ("pl", False),
                                           ("pl", True)])
def test_dysample_zero_offsets_is_bilinear(size, style, dyscope):
    dys = DySample(8, 8, style=style, dyscope=dyscope)
    x = torch.randn(2, 8, *COARSE)
    ref = F.interpolate(x, size, mode="bilinear", align_corners=False)
    # the official initialisation (N(0, 0.001²) offsets) is bilinear up to ~1e-3 pixels
    torch.testing.assert_close(dys(x, torch.zeros(2, 1, *size)), ref, atol=0.02, rtol=0)
    torch.nn.init.zeros_(dys.offset.weight)
    torch.testing.assert_close(dys(x, torch.zeros(2, 1, *size)), ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("style", ["lp", "pl"])
def test_dysample_dynamic_scope_starts_at_the_static_one(style):
    static, dynamic = DySample(8, 8, style=style), DySample(8, 8, style=style, dyscope=True)
    dynamic.offset.load_state_dict(static.offset.state_dict())
    with torch.no_grad():
        static.offset.weight.mul_(500)  # visible offsets
        dynamic.offset.weight.mul_(500)
    x = torch.randn(1, 8, *COARSE)
    torch.testing.assert_close(dynamic(x, x.new_zeros(1, 1, 8, 10)),
                               static(x, x.new_zeros(1, 1, 8, 10)))
    with torch.no_grad():
        dynamic.scope.weight.normal_(0, 1)
    assert not torch.allclose(dynamic(x, x.new_zeros(1, 1, 8, 10)),
                              static(x, x.new_zeros(1, 1, 8, 10)))


def test_dysample_pl_offsets_come_from_the_shuffled_map():
    dys = DySample(8, 8, style="pl", groups=2)
    x = torch.randn(1, 8, *COARSE)
    o = dys.offset(F.pixel_shuffle(x, 2)) * 0.25  # 1×(2·g)×8×10, [x/y][group]
    ref = torch.stack([o[:, [0, 1]], o[:, [2, 3]]], 2).flatten(0, 1)  # group-major, (dx, dy)
    torch.testing.assert_close(dys.offsets(x), ref)


# --- CARAFE ---------------------------------------------------------------------------------


def test_carafe_kernels_are_the_pixel_shuffled_encoder_output():
    car = CARAFE(6, 6, k_up=3)
    torch.nn.init.normal_(car.encode.weight, 0, 0.1)
    x = torch.randn(1, 6, *COARSE)
    enc = car.encode(car.compress(x))  # 1×(9·4)×h×w, channel t·s² + sub-pixel
    k = car.kernels(x, (8, 10))
    for i, j in [(0, 0), (3, 6), (7, 9), (4, 1)]:
        sub = (i % 2) * 2 + j % 2
        logits = enc[0, [t * 4 + sub for t in range(9)], i // 2, j // 2]
        torch.testing.assert_close(k[0, :, i, j], torch.softmax(logits, 0))


@pytest.mark.parametrize("size", FINE_SIZES)
def test_carafe_matches_loop_and_starts_as_a_box_filter(size):
    car = CARAFE(6, 3).double()
    x = torch.randn(2, 6, *COARSE).double()
    fine = torch.zeros(2, 3, *size).double()
    out = car(x, fine)
    torch.testing.assert_close(out, loop_reassemble(x, car.kernels(x, size), 5))
    torch.nn.init.zeros_(car.encode.weight)  # uniform kernels: the 5×5 mean, zero padded
    box = F.avg_pool2d(x, 5, stride=1, padding=2, count_include_pad=True)
    iy = torch.tensor([src(i, size[0], COARSE[0]) for i in range(size[0])])
    ix = torch.tensor([src(j, size[1], COARSE[1]) for j in range(size[1])])
    torch.testing.assert_close(car(x, fine), box[:, :, iy][:, :, :, ix])


# --- FADE -----------------------------------------------------------------------------------


@pytest.mark.parametrize("size,lite", [(size, False) for size in FINE_SIZES] + [((9, 11), True)])
def test_fade_matches_per_pixel_loop(size, lite):
    fade = FADE(6, 6, lite=lite).double()
    x, f = torch.randn(2, 6, *COARSE).double(), torch.randn(2, 6, *size).double()
    enc_f = fade.encode(fade.compress_fine(f))
    enc_c = fade.encode(fade.compress_coarse(x))
    gate_c = fade.gate(x)
    kern = torch.zeros(2, 25, *size).double()
    gate = torch.zeros(2, 1, *size).double()
    for i in range(size[0]):
        for j in range(size[1]):
            u, v = src(i, size[0], COARSE[0]), src(j, size[1], COARSE[1])
            kern[:, :, i, j] = torch.softmax(enc_f[:, :, i, j] + enc_c[:, :, u, v], 1)
            gate[:, :, i, j] = torch.sigmoid(gate_c[:, :, u, v])
    ref = gate * f + (1 - gate) * loop_reassemble(x, kern, 5)
    torch.testing.assert_close(fade(x, f), ref)


# --- SAPA -----------------------------------------------------------------------------------


@pytest.mark.parametrize("size", FINE_SIZES)
def test_sapa_matches_per_pixel_windowed_attention(size):
    sapa = SAPA(6, 5, embedding=4).double()
    with torch.no_grad():  # non-trivial norms and biases
        for p in sapa.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x, f = torch.randn(2, 6, *COARSE).double(), torch.randn(2, 5, *size).double()
    q = sapa.query(F.layer_norm(f.permute(0, 2, 3, 1), (5,), sapa.norm_fine.weight,
                                sapa.norm_fine.bias)).permute(0, 3, 1, 2)
    kk = sapa.key(F.layer_norm(x.permute(0, 2, 3, 1), (6,), sapa.norm_coarse.weight,
                               sapa.norm_coarse.bias)).permute(0, 3, 1, 2)
    attn = torch.softmax(loop_similarity(q, kk, 5), 1)  # out-of-map taps: logit 0, value 0
    torch.testing.assert_close(sapa(x, f), loop_reassemble(x, attn, 5))


def test_sapa_output_depends_on_the_fine_guide():
    sapa = SAPA(6, 5)
    x = torch.randn(1, 6, *COARSE)
    f = torch.randn(1, 5, 8, 10)
    assert not torch.allclose(sapa(x, f), sapa(x, f.flip(-1)))


# --- interface, sizes, counts ---------------------------------------------------------------


def test_parameter_counts_at_the_defaults():
    c, d, k, s, g = 128, 64, 5, 2, 4
    expected = {
        "dysample": (c + 1) * 2 * g * s * s,
        "carafe": (c * d + d) + (d * k * k * s * s * 9 + k * k * s * s),
        "fade": (c + 1) + (c * d + d) + c * d + (d * k * k * 9 + k * k),
        "sapa": 2 * 2 * c + 2 * (c * d + d),
    }
    for name, n in expected.items():
        assert count_params(create_upsampler(name, c, c, c)) == n, name
    assert count_params(DySample(c, c, dyscope=True)) == expected["dysample"] + c * 2 * g * s * s
    assert count_params(DySample(c, c, style="pl")) == (c // 4 + 1) * 2 * g
    lite = (c + 1) + (c * k * k + k * k) + c * k * k + (k * k * 9 + k * k)
    assert count_params(create_upsampler("fade", c, c, c, lite=True)) == lite


def test_reassembly_macs_are_counted():
    c, h, w = 16, 6, 8
    up = CARAFE(c, c)
    macs = count_call_macs(lambda m, a, b: m(a, b), up, [(1, c, h, w), (1, c, 2 * h, 2 * w)])
    convs = c * 64 * h * w + 64 * 100 * 9 * h * w
    assert macs == convs + c * 25 * 4 * h * w


@pytest.mark.parametrize("name", ["dysample", "carafe", "fade", "sapa"])
def test_projection_and_channel_errors(name):
    with pytest.raises(ValueError, match="must equal"):
        create_upsampler(name, 8, 8, 16)
    if name == "fade":
        with pytest.raises(ValueError, match="fine_channels"):
            create_upsampler(name, 8, 4, 8)
    assert create_upsampler(name, 8, 8, 8)(torch.randn(1, 8, 3, 3),
                                           torch.randn(1, 8, 5, 7)).shape == (1, 8, 5, 7)
