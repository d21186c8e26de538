import pytest
import torch
from torch import nn

from rtseg.inference.tta import predict_probs


def _pointwise_model(num_classes: int = 5) -> nn.Module:
    """A 1×1 conv: translation-equivariant and flip-equivariant."""
    torch.manual_seed(0)
    return nn.Conv2d(3, num_classes, 1).eval()


class WindowPosition(nn.Module):
    """Logits ≈ 50·one-hot(column index inside the input), K = ``width`` classes.

    Its output depends on where a pixel sits in the window, so it exposes how windows are
    placed and averaged.
    """

    def __init__(self, width: int) -> None:
        super().__init__()
        self.width = width
        self.sizes: list[tuple[int, int]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        self.sizes.append((h, w))
        cols = torch.arange(w).clamp(max=self.width - 1)
        onehot = nn.functional.one_hot(cols, self.width).T.float()  # K×w
        return 50.0 * onehot[None, :, None, :].expand(b, -1, h, -1)


def _onehot_rows(rows: list[list[float]]) -> torch.Tensor:
    """Expected probabilities per column (list over x of K values) → 1×K×1×W."""
    return torch.tensor(rows, dtype=torch.float32).T[None, :, None, :]


def test_slide_equals_whole_for_pointwise_model_on_odd_sizes():
    model = _pointwise_model()
    image = torch.randn(2, 3, 37, 53)
    whole = predict_probs(model, image)
    slide = predict_probs(model, image, mode="slide", crop=(16, 20), stride=(11, 13))
    assert slide.shape == (2, 5, 37, 53)
    torch.testing.assert_close(slide, whole, rtol=0, atol=1e-6)
    torch.testing.assert_close(whole, model(image).softmax(1))


def test_slide_pads_an_image_smaller_than_the_crop():
    model = _pointwise_model()
    image = torch.randn(1, 3, 5, 7)
    slide = predict_probs(model, image, mode="slide", crop=(8, 8), stride=(4, 4))
    assert slide.shape == (1, 5, 5, 7)
    torch.testing.assert_close(slide, predict_probs(model, image), rtol=0, atol=1e-6)

    model = WindowPosition(width=4)
    out = predict_probs(model, torch.zeros(1, 3, 2, 3), mode="slide", crop=(2, 4))
    assert model.sizes == [(2, 4)]  # one padded window
    expected = _onehot_rows([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]])
    torch.testing.assert_close(out[:, :, :1], expected, rtol=0, atol=1e-6)


def test_slide_stitches_and_averages_overlapping_windows():
    model = WindowPosition(width=4)
    out = predict_probs(model, torch.zeros(1, 3, 2, 10), mode="slide", crop=(2, 4), stride=(2, 3))
    # Windows start at x = 0, 3, 6. Columns 3 and 6 are covered twice: as the last column of
    # one window and the first of the next.
    expected = _onehot_rows(
        [
            [1, 0, 0, 0],
            [0, 1, 0, 0],
            [0, 0, 1, 0],
            [0.5, 0, 0, 0.5],
            [0, 1, 0, 0],
            [0, 0, 1, 0],
            [0.5, 0, 0, 0.5],
            [0, 1, 0, 0],
            [0, 0, 1, 0],
            [0, 0, 0, 1],
        ]
    )
    assert len(model.sizes) == 3
    torch.testing.assert_close(out, expected.expand(1, 4, 2, 10), rtol=0, atol=1e-6)


def test_slide_last_window_is_flush_with_the_edge():
    model = WindowPosition(width=4)
    out = predict_probs(model, torch.zeros(1, 3, 1, 9), mode="slide", crop=(1, 4), stride=(1, 4))
    # Windows at x = 0, 4 and, to reach column 8, 5 (overlapping 5..7 with the second one).
    expected = _onehot_rows(
        [
            [1, 0, 0, 0],
            [0, 1, 0, 0],
            [0, 0, 1, 0],
            [0, 0, 0, 1],
            [1, 0, 0, 0],
            [0.5, 0.5, 0, 0],
            [0, 0.5, 0.5, 0],
            [0, 0, 0.5, 0.5],
            [0, 0, 0, 1],
        ]
    )
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)


def test_flip_with_flip_equivariant_model_is_unchanged():
    model = _pointwise_model()
    image = torch.randn(1, 3, 11, 14)
    torch.testing.assert_close(
        predict_probs(model, image, flip=True), predict_probs(model, image), rtol=0, atol=1e-6
    )
    torch.testing.assert_close(
        predict_probs(model, image, mode="slide", crop=(8, 8), stride=(5, 5), flip=True),
        predict_probs(model, image),
        rtol=0,
        atol=1e-6,
    )


def test_flip_is_applied():
    out = predict_probs(WindowPosition(width=3), torch.zeros(1, 3, 1, 3), flip=True)
    # The mirrored pass sees column x at position 2 - x.
    expected = _onehot_rows([[0.5, 0, 0.5], [0, 1, 0], [0.5, 0, 0.5]])
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)


def test_multi_scale_sizes_and_average():
    model = WindowPosition(width=64)
    image = torch.zeros(2, 3, 15, 21)
    out = predict_probs(model, image, scales=(0.5, 1.0, 1.5))
    assert model.sizes == [(8, 10), (15, 21), (22, 32)]  # round(s·H) × round(s·W)
    assert out.shape == (2, 64, 15, 21)
    torch.testing.assert_close(out.sum(1), torch.ones(2, 15, 21))

    # A per-pixel model on a constant image gives the same probabilities at every scale.
    model = _pointwise_model()
    image = torch.ones(1, 3, 9, 13) * torch.randn(1, 3, 1, 1)
    torch.testing.assert_close(
        predict_probs(model, image, mode="slide", crop=(4, 4), stride=(3, 3), scales=(0.75, 1.25)),
        predict_probs(model, image),
        rtol=0,
        atol=1e-6,
    )


def test_bad_arguments():
    model = _pointwise_model()
    image = torch.randn(1, 3, 8, 8)
    with pytest.raises(ValueError, match="crop"):
        predict_probs(model, image, mode="slide")
    with pytest.raises(ValueError, match="mode"):
        predict_probs(model, image, mode="tiles")
    with pytest.raises(ValueError, match="classes"):
        predict_probs(model, image, num_classes=19)


def test_tta_options_are_checked_once_and_carried() -> None:
    from rtseg.errors import UsageError
    from rtseg.inference.tta import TTAOptions, predict_probs

    o = TTAOptions(mode="slide", crop=32, scales=[1, 0.5])
    assert (o.crop, o.stride, o.scales) == ((32, 32), None, (1.0, 0.5)) and not o.single_pass
    assert TTAOptions().single_pass and not TTAOptions(flip=True).single_pass
    for bad, message in [({"mode": "tiles"}, "mode must be"), ({"mode": "slide"}, "needs crop"),
                         ({"stride": 8}, "stride applies to mode='slide' only"),
                         ({"scales": [0]}, "scales must be positive"),
                         ({"long_side": 64}, "give short_side too"),
                         ({"crop": (0, 4), "mode": "slide"}, "crop must be two positive"),
                         ({"window_average": "max"}, "window_average must be")]:
        with pytest.raises(UsageError, match=message):
            TTAOptions(**bad)
    with pytest.raises(UsageError, match="unknown inference option.*flips.*valid: mode"):
        TTAOptions.from_mapping({"flips": True})
    with pytest.raises(UsageError, match="needs crop"):
        TTAOptions().replace(mode="slide")
    torch.manual_seed(0)
    model = torch.nn.Conv2d(3, 4, 3, padding=1).eval()
    x = torch.randn(1, 3, 24, 40)
    by_object = predict_probs(model, x, TTAOptions(mode="slide", crop=(16, 16), stride=(8, 12),
                                                    flip=True, scales=(1.0, 0.75)))
    by_name = predict_probs(model, x, mode="slide", crop=(16, 16), stride=(8, 12), flip=True,
                            scales=(1.0, 0.75))
    assert torch.equal(by_object, by_name)
    assert not torch.allclose(by_object, predict_probs(model, x))  # the options act
