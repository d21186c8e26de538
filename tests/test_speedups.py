"""The fast paths of the upsamplers: same function, caches off while tracing."""

import pytest
import torch
import torch.nn.functional as F

import rtseg
from rtseg.export import export_onnx
from rtseg.upsample import criss_cross_attention, guided_sample
from rtseg.upsample import gum as gum_module

pytestmark = pytest.mark.usefixtures("one_thread")


def test_criss_cross_gradients():
    args = [torch.randn(1, 3, 4, 5, dtype=torch.double, requires_grad=True) for _ in range(2)]
    args.append(torch.randn(1, 2, 4, 5, dtype=torch.double, requires_grad=True))
    assert torch.autograd.gradcheck(criss_cross_attention, tuple(args))


def test_criss_cross_large_energies_stay_finite():
    # energies of ±1e3: a naive exp overflows; the shared maximum keeps the softmax finite
    q, k = 30 * torch.randn(1, 4, 6, 7), 30 * torch.randn(1, 4, 6, 7)
    out = criss_cross_attention(q, k, torch.randn(1, 3, 6, 7))
    assert torch.isfinite(out).all()


def test_gum_grid_cache_hit_and_autograd_after_inference_mode():
    gum_module.clear_grid_cache()
    coarse, off = torch.randn(1, 2, 4, 5), 0.3 * torch.randn(1, 2, 8, 10)
    with torch.inference_mode():
        first = guided_sample(coarse, off)
    assert len(gum_module._GRID_CACHE) == 1
    (grid, _), = gum_module._GRID_CACHE.values()
    # the entry made under inference_mode serves a later call that needs gradients
    off_g = off.clone().requires_grad_()
    second = guided_sample(coarse, off_g)
    second.sum().backward()
    assert off_g.grad is not None and len(gum_module._GRID_CACHE) == 1
    assert next(iter(gum_module._GRID_CACHE.values()))[0] is grid
    torch.testing.assert_close(first, second.detach())


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::torch.jit.TracerWarning")
def test_gum_cache_bounded_and_off_while_tracing(tmp_path):
    gum_module.clear_grid_cache()
    for n in range(2, 10):
        guided_sample(torch.randn(1, 1, 3, 3), torch.zeros(1, 2, n, n))
    assert len(gum_module._GRID_CACHE) == gum_module._GRID_CACHE_SIZE
    gum_module.clear_grid_cache()
    model = rtseg.create_model("gun", 3, aux=False).eval()
    export_onnx(model, tmp_path / "gun.onnx", (64, 96))
    torch.jit.trace(model, torch.randn(1, 3, 64, 96), check_trace=False)
    assert len(gum_module._GRID_CACHE) == 0


def test_guided_sample_half_positions_in_float32():
    # 2048 columns: fp16 cannot tell neighbouring cell centres apart near ±1; fp32 can
    coarse = torch.randn(1, 1, 2, 256)
    off = torch.zeros(1, 2, 2, 2048)
    ref = F.interpolate(coarse, (2, 2048), mode="bilinear", align_corners=False)
    out = guided_sample(coarse.half(), off.half())
    assert out.dtype == torch.float16
    torch.testing.assert_close(out.float(), ref, atol=2e-3, rtol=2e-3)
