"""Every model's ONNX export in every installed runtime: ONNX Runtime, OpenVINO, OpenCV DNN.

Exported with dynamic batch/H/W at 64×96 and run at batch 1 (64×96) and batch 2 at odd sizes
(45×61); logits within 1e-4 of PyTorch relative to their range. A runtime that is not installed
is skipped with the reason.
"""

from __future__ import annotations

import importlib.util
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import rtseg
from rtseg.export import export_onnx

RUNTIMES = ["onnxruntime", "openvino", "cv2"]
CASES = [(1, (64, 96)), (2, (45, 61))]


def _run(runtime: str, path: str, x: np.ndarray) -> np.ndarray:
    if runtime == "onnxruntime":
        import onnxruntime as ort

        return ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(
            None, {"image": x})[0]
    if runtime == "openvino":
        import openvino as ov

        compiled = ov.Core().compile_model(path, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        return compiled(x)[0]
    import cv2

    net = cv2.dnn.readNetFromONNX(path)
    net.setInput(x)
    return net.forward()


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx")
    cache = {}

    def get(name: str, randomise):
        if name not in cache:
            torch.manual_seed(0)
            model = randomise(rtseg.create_model(name, 5, aux=False))
            path = out / f"{name}.onnx"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                export_onnx(model, path, (64, 96))
            cache[name] = (model, str(path))
        return cache[name]

    return get


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("name", rtseg.list_models())
def test_every_model_in_every_runtime(name, runtime, exports, randomise, one_thread):
    if importlib.util.find_spec(runtime) is None:
        pytest.skip(f"{runtime} is not installed")
    if runtime == "cv2" and name.startswith("fanet"):
        pytest.xfail("OpenCV DNN 5.0 returns wrong logits (up to 1e23) for the FANet networks "
                     "in some runs while ONNX Runtime and OpenVINO match PyTorch: an OpenCV "
                     "defect (fpn_r18_fast_attention, the same attention, is not affected)")
    model, path = exports(name, randomise)
    for batch, size in CASES:
        if runtime == "cv2" and min(size) < 64 and name.startswith("fpn_lite0"):
            continue  # a 1×1 stride-32 level: test_opencv_resize_from_one_pixel_is_wrong
        x = torch.randn(batch, 3, *size, generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            ref = model(x).numpy()
        out = _run(runtime, path, x.numpy())
        assert out.shape == ref.shape
        scale = max(1.0, float(np.abs(ref).max()))
        assert np.abs(out - ref).max() <= 1e-4 * scale, (name, runtime, batch, size)


@pytest.mark.xfail(strict=True, reason="OpenCV DNN defect: a bilinear Resize whose input is 1×1 "
                   "returns values up to 1e13 (ONNX Runtime and PyTorch agree); the "
                   "EfficientNet-Lite models meet it below 64 px, their stride-32 level being "
                   "floor-divided")
def test_opencv_resize_from_one_pixel_is_wrong(tmp_path) -> None:
    cv2 = pytest.importorskip("cv2", reason="OpenCV DNN is the third runtime (dev extra)")

    class Up(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            coarse, fine = F.avg_pool2d(x, 32), F.avg_pool2d(x, 16)
            return F.interpolate(coarse, size=fine.shape[-2:], mode="bilinear") + fine

    path = str(tmp_path / "up.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Up(), torch.randn(1, 3, 64, 96), path, input_names=["image"],
                          dynamic_axes={"image": {2: "h", 3: "w"}}, opset_version=17,
                          dynamo=False)
    x = torch.randn(1, 3, 45, 61)  # coarse 1×1 → fine 2×3
    net = cv2.dnn.readNetFromONNX(path)
    net.setInput(x.numpy())
    assert np.abs(net.forward() - Up()(x).numpy()).max() <= 1e-4
