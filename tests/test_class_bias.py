"""tools/class_bias.py: IoU of shifted log-probabilities and the fitted offsets."""

import torch

from tools.class_bias import fit_bias, iou_with


def test_iou_with_on_a_hand_made_map() -> None:
    labels = torch.tensor([[[0, 0, 1], [1, 2, 255]]])  # 255: not counted
    pred = torch.tensor([[[0, 1, 1], [1, 1, 0]]])
    logp = (5.0 * torch.nn.functional.one_hot(pred, 3).permute(0, 3, 1, 2)).log_softmax(1).half()
    # class 0: TP 1, 2 true, 1 predicted -> 1/2; class 1: TP 2, 2 true, 4 predicted -> 2/4
    assert iou_with(logp, labels, torch.zeros(3)).tolist() == [0.5, 0.5, 0.0]
    # +10 on class 2: every counted pixel predicted 2 -> class 2: TP 1 of 5 predicted
    assert iou_with(logp, labels, torch.tensor([0.0, 0.0, 10.0])).tolist() == [0.0, 0.0, 0.2]


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
