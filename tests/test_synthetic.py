"""The built-in synthetic street scenes: deterministic, any size, and not solvable by colour."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rtseg.data import Synthetic
from rtseg.data.street_scenes import POLE, SIGN, SYNTHETIC_CLASSES
from rtseg.inference.metrics import ConfusionMatrix


def stack(split: str, n: int, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    ds = Synthetic(split, num_images=n, size=size, seed=0)
    images, labels = zip(*(ds.load(i) for i in range(n)))
    return torch.stack(images), torch.stack(labels)


def test_deterministic_per_seed_and_split() -> None:
    a = Synthetic("train", num_images=3, size=(40, 72), seed=5)
    b = Synthetic("train", num_images=3, size=(40, 72), seed=5)
    for i in range(3):
        assert torch.equal(a.load(i)[0], b.load(i)[0]) and torch.equal(a.load(i)[1], b.load(i)[1])
    assert not torch.equal(a.load(0)[0], Synthetic("val", size=(40, 72), seed=5).load(0)[0])
    assert not torch.equal(a.load(0)[0], Synthetic("train", size=(40, 72), seed=6).load(0)[0])


def test_any_size_and_valid_labels() -> None:
    for size in [(8, 8), (37, 101), (256, 512)]:
        image, label = Synthetic("test", num_images=1, size=size).load(0)
        assert image.shape == (3, *size) and image.dtype == torch.uint8
        assert label.shape == size and label.dtype == torch.int64
        assert int(label.min()) >= 0 and int(label.max()) < len(SYNTHETIC_CLASSES)


def test_bad_arguments() -> None:
    for kwargs, message in [({"split": "dev"}, "unknown synthetic split"),
                            ({"size": (4, 64)}, "H, W >= 8"),
                            ({"num_images": -1}, "num_images must be >= 0")]:
        try:
            Synthetic(**kwargs)
        except ValueError as err:
            assert message in str(err)
        else:
            raise AssertionError(f"{kwargs} was accepted")


def test_scenes_hold_every_class_and_thin_poles() -> None:
    _, labels = stack("train", 24, (128, 256))
    counts = torch.bincount(labels.reshape(-1), minlength=len(SYNTHETIC_CLASSES))
    assert torch.all(counts > 0), dict(zip(SYNTHETIC_CLASSES, counts.tolist()))
    # Horizontal run lengths of pole pixels: poles are 1-3 px wide at every image size.
    pole = (labels == POLE).to(torch.int8)
    starts = pole[..., 1:] - pole[..., :-1] == 1
    runs = []
    for row in pole.reshape(-1, pole.shape[-1]):
        if row.any():
            edges = torch.diff(torch.cat([torch.zeros(1), row.float(), torch.zeros(1)]))
            runs += (torch.nonzero(edges == -1) - torch.nonzero(edges == 1)).flatten().tolist()
    assert starts.any() and len(runs) > 100
    assert sum(r <= 3 for r in runs) / len(runs) > 0.8
    sign_pixels = (labels == SIGN).sum(dim=(1, 2))
    assert 0 < float(sign_pixels.float().median()) < 0.01 * 128 * 256  # signs are small


def test_colour_alone_is_clearly_worse_than_a_small_cnn() -> None:
    """The best per-pixel colour classifier (majority class of each quantised RGB colour on
    the training pixels) against a 5-layer CNN trained for 120 steps on the same images."""
    torch.manual_seed(0)
    size = (64, 128)
    train_x, train_y = stack("train", 96, size)
    val_x, val_y = stack("val", 32, size)

    def colour_code(x: torch.Tensor) -> torch.Tensor:  # 16 levels per channel
        return ((x // 16).long() * torch.tensor([256, 16, 1]).view(1, 3, 1, 1)).sum(1)

    votes = torch.zeros(4096, 8)
    votes.index_put_((colour_code(train_x).flatten(), train_y.flatten()),
                     torch.ones(train_y.numel()), accumulate=True)
    prior = torch.bincount(train_y.flatten(), minlength=8).float()
    table = torch.where(votes.sum(1, keepdim=True) > 0, votes, prior).argmax(1)
    colour_cm = ConfusionMatrix(8)
    colour_cm.update(table[colour_code(val_x)], val_y)

    def block(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, stride, dilation, dilation), nn.BatchNorm2d(cout),
                nn.ReLU()]

    net = nn.Sequential(*block(3, 32, 2), *block(32, 32, dilation=2), *block(32, 64, 2),
                        *block(64, 64, dilation=2), *block(64, 64, dilation=4), nn.Conv2d(64, 8, 1))
    opt = torch.optim.Adam(net.parameters(), 3e-3)

    def forward(x: torch.Tensor) -> torch.Tensor:
        logits = net((x.float() / 255 - 0.5) / 0.25)
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)

    for _ in range(120):
        idx = torch.randint(0, len(train_x), (8,))
        loss = F.cross_entropy(forward(train_x[idx]), train_y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    cnn_cm = ConfusionMatrix(8)
    with torch.no_grad():
        cnn_cm.update(forward(val_x).argmax(1), val_y)
    colour, cnn = colour_cm.compute()["miou"], cnn_cm.compute()["miou"]
    assert cnn > colour + 0.15, f"colour mIoU {colour:.3f} vs CNN {cnn:.3f}"
