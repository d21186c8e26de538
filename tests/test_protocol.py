"""The options that reproduce mmsegmentation's evaluation protocol (docs/evaluation.md): the
long-side cap of a short-side resize and the averaging of sliding windows' logits."""

import pytest
import torch
from torch import nn

import rtseg
from rtseg.errors import UsageError
from rtseg.inference.tta import predict_probs, short_side_size


class WindowMean(nn.Module):
    """Two classes scored ±(mean of the input's first channel): each window gets one score, so
    windows that overlap disagree. Records the input sizes it saw."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[tuple[int, int]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.sizes.append(tuple(x.shape[-2:]))
        m = x[:, :1].mean((2, 3), keepdim=True).expand(-1, 1, *x.shape[-2:])
        return torch.cat([m, -m], 1)


def test_long_side_caps_the_short_side_resize() -> None:
    assert short_side_size((512, 1024), 512, 2048) == (512, 1024)  # cap not reached
    assert short_side_size((512, 4096), 512) == (512, 4096)
    assert short_side_size((512, 4096), 512, 2048) == (256, 2048)  # aspect ratio 8: capped
    assert short_side_size((300, 2000), 512, 2048) == (307, 2048)
    model = WindowMean()
    image = torch.rand(1, 3, 8, 40)
    out = predict_probs(model, image, short_side=8, long_side=20)
    assert model.sizes == [(4, 20)] and out.shape == (1, 2, 8, 40)
    with pytest.raises(UsageError, match="long_side caps a short_side resize"):
        predict_probs(model, image, long_side=20)
    with pytest.raises(UsageError, match="long_side must be a positive integer, got 0"):
        short_side_size((8, 40), 8, 0)


def test_windows_average_probabilities_or_logits() -> None:
    image = torch.zeros(1, 3, 4, 12)
    image[..., 0, :, :] = torch.linspace(0, 3, 12)  # left window darker than the right one
    kw = {"mode": "slide", "crop": (4, 8), "stride": (4, 4)}  # windows at x 0 and 4
    probs = predict_probs(WindowMean(), image, **kw)
    logits = predict_probs(WindowMean(), image, window_average="logits", **kw)
    m1, m2 = image[0, 0, 0, :8].mean(), image[0, 0, 0, 4:].mean()
    def p(m):
        return torch.softmax(torch.stack([m, -m]), 0)
    # left of the overlap: window 1 alone; overlap: the two averaged, each way
    assert torch.allclose(probs[0, :, 0, 0], p(m1)) and torch.allclose(logits[0, :, 0, 0], p(m1))
    assert torch.allclose(probs[0, :, 0, 5], (p(m1) + p(m2)) / 2)
    assert torch.allclose(logits[0, :, 0, 5], p((m1 + m2) / 2))
    assert not torch.allclose(probs[0, :, 0, 5], logits[0, :, 0, 5], atol=1e-3)
    assert torch.allclose(logits.sum(1), torch.ones(1, 4, 12))  # still probabilities
    # whole-image inference has no windows: the option changes nothing
    whole = predict_probs(WindowMean(), image)
    assert torch.equal(whole, predict_probs(WindowMean(), image, window_average="logits"))


def test_segmenter_and_evaluate_take_the_options() -> None:
    seg = rtseg.Segmenter(WindowMean(), ["a", "b"], [(0, 0, 0), (255, 255, 255)], "cpu",
                          mean=(0, 0, 0), std=(1, 1, 1), mode="slide", crop=(4, 8),
                          stride=(4, 4), window_average="logits")
    image = torch.zeros(3, 4, 12)
    image[0] = torch.linspace(0, 1, 12)
    expected = predict_probs(WindowMean(), image[None], window_average="logits", mode="slide",
                              crop=(4, 8), stride=(4, 4))
    assert torch.allclose(seg.logits(image).exp(), expected[0])
    for bad, match in [({"window_average": "mean"}, "window_average must be 'probs' or "
                        "'logits', got 'mean'"),
                       ({"long_side": 2048}, "long_side caps a short_side resize"),
                       ({"short_side": 512, "long_side": -1}, "long_side must be a positive")]:
        with pytest.raises(UsageError, match=match):
            seg(image, **bad)
    data = rtseg.data.Synthetic("val", size=(32, 48), num_images=1)
    model = rtseg.create_model("fpn_r18_bilinear", data.num_classes, aux=False).eval()
    res = rtseg.evaluate(model, data=data, device="cpu", short_side=16, long_side=20,
                         mode="slide", crop=(16, 16), stride=(8, 8), window_average="logits",
                         progress=False)
    assert res["long_side"] == 20 and res["window_average"] == "logits" and res["images"] == 1
