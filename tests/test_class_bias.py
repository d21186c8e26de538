"""tools/class_bias.py: IoU of shifted log-probabilities and the fitted offsets."""

import torch

from rtseg.inference.metrics import ConfusionMatrix
from tools.class_bias import fit_bias, iou_with


def test_iou_with_matches_the_confusion_matrix() -> None:
    g = torch.Generator().manual_seed(0)
    logp = torch.randn(3, 4, 5, 6, generator=g).log_softmax(1).half()
    labels = torch.randint(0, 4, (3, 5, 6), generator=g)
    labels[0, 0] = 255  # ignored
    bias = torch.tensor([0.0, 0.5, -0.5, 0.25])
    cm = ConfusionMatrix(4, 255, "cpu")
    cm.update((logp.float() + bias.view(1, 4, 1, 1)).argmax(1), labels)
    assert torch.allclose(iou_with(logp, labels, bias), torch.tensor(cm.compute()["iou"],
                                                                     dtype=torch.float64))


def test_fit_bias_undoes_a_shift_of_one_class() -> None:
    """Class 1 is scored 0.8 too low everywhere: the fit lifts it and mIoU rises to 1."""
    labels = torch.randint(0, 3, (4, 8, 8), generator=torch.Generator().manual_seed(1))
    logits = 3.0 * torch.nn.functional.one_hot(labels, 3).permute(0, 3, 1, 2).float()
    logits[:, 1] -= 3.8  # a class-1 pixel now loses to the others by 0.8
    logp = logits.log_softmax(1).half()
    assert iou_with(logp, labels, torch.zeros(3))[1] == 0
    bias = fit_bias(logp, labels)
    assert bias[1] - bias[[0, 2]].max() > 0.8
    assert iou_with(logp, labels, bias).mean() == 1.0
