"""tools/openvino_concat_crash.py: its graphs are valid and ONNX Runtime runs them as ONNX
says; OpenVINO crashes on the requantised Concat and on nothing else the variations change
(or it was fixed: then docs/deploy.md and the tool must say so)."""

from dataclasses import replace

import numpy as np
import pytest

from tools.openvino_concat_crash import CRASHES, VARIATIONS, Graph, build, compiles

pytestmark = pytest.mark.usefixtures("one_thread")
ort = pytest.importorskip("onnxruntime", reason="the reference run needs onnxruntime")


def _quantise(x: np.ndarray, scale: float, zero: int) -> np.ndarray:
    return np.clip(np.rint(x / scale) + zero, 0, 255)


@pytest.mark.parametrize("name, change", VARIATIONS, ids=[v[0] for v in VARIATIONS])
def test_onnxruntime_runs_each_graph_as_onnx_defines_it(name, change):
    g = replace(Graph(), **change)
    rng = np.random.default_rng(0)
    x0, x1 = (rng.uniform(-40, 40, (1, g.channels, 2, 2)).astype(np.float32) for _ in (0, 1))
    m = np.concatenate([x0, x1], 1) if g.concat else x0 + x1
    m = (_quantise(m, 0.5, g.zero_point) - g.zero_point) * 0.5
    if g.between == "Relu":
        m = np.maximum(m, 0)
    want = _quantise(m, 0.25, 0) if g.last_q else m
    session = ort.InferenceSession(build(g).SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    got = session.run(None, {"x0": x0, "x1": x1})[0]
    np.testing.assert_allclose(got.astype(np.float64), want, atol=1e-6)


@pytest.mark.parametrize("name, change", VARIATIONS, ids=[v[0] for v in VARIATIONS])
def test_openvino_crashes_only_on_the_requantised_concat(name, change):
    pytest.importorskip("openvino", reason="the crash is OpenVINO's")
    outcome = compiles(replace(Graph(), **change))
    if name in CRASHES:
        assert outcome == "fails: the process died (signal 11)", (
            f"{name}: OpenVINO {outcome}: fixed? then say so in docs/deploy.md and the tool")
    else:
        assert outcome == "compiles"
