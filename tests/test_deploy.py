"""rtseg.export, the library call: a file rtseg.load accepts, PyTorch's labels, one-line errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import rtseg
from rtseg.cli import main
from rtseg.deploy import ExportCheckError, ExportReport
from rtseg.deploy.export import second_size
from rtseg.errors import RtsegError, UnknownNameError, UsageError

pytestmark = pytest.mark.usefixtures("one_thread")


def test_export_of_a_model_name_loads_and_gives_pytorchs_labels(tmp_path, randomise):
    pytest.importorskip("onnxruntime", reason="onnxruntime is an optional extra (rtseg[full])")
    torch.manual_seed(0)
    model = randomise(rtseg.create_model("fpn_r18_bilinear", 4, aux=False))
    path = tmp_path / "m.onnx"
    report = rtseg.export(model, path, size=(32, 48), name="fpn_r18_bilinear")
    assert isinstance(report, ExportReport) and report.paths == [path]
    assert [c.size for c in report.checks] == [(32, 48), second_size((32, 48))]
    assert report.max_diff <= 1e-4 and report.label_agreement > 0.99
    assert report.sizes[path] == path.stat().st_size > 0
    seg = rtseg.load(path, threads=1)
    assert seg.classes == [f"class_{k}" for k in range(4)] and "fpn_r18_bilinear" in seg.name
    reference = rtseg.Segmenter(model, seg.classes, seg.palette, "cpu")
    image = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    assert (seg(image) == reference(image)).mean() > 0.99
    assert "labels agree on" in str(report) and f"wrote {path}" in str(report)

    # a registered name: random weights, num_classes classes, the same metadata
    named = rtseg.export("fpn_r18_bilinear", tmp_path / "n.onnx", size=(32, 48), num_classes=3,
                         check=False)
    assert named.checks == [] and rtseg.load(named.onnx).num_classes == 3


def test_export_of_a_segmenter_keeps_its_classes(tmp_path):
    pytest.importorskip("onnxruntime", reason="onnxruntime is an optional extra (rtseg[full])")
    model = rtseg.create_model("fpn_r18_bilinear", 2, aux=False)
    seg = rtseg.Segmenter(model, ["road", "sky"], [(1, 2, 3), (4, 5, 6)], "cpu",
                          name="fpn_r18_bilinear")
    report = rtseg.export(seg, tmp_path / "s.onnx", size=(32, 32), dynamic=False)
    loaded = rtseg.load(report.onnx)
    assert loaded.classes == ["road", "sky"] and loaded.palette == [(1, 2, 3), (4, 5, 6)]
    assert report.model == "fpn_r18_bilinear" and not report.dynamic
    with pytest.raises(UsageError, match="cannot be exported again"):
        rtseg.export(loaded, tmp_path / "again.onnx")


@pytest.mark.parametrize("source, error, match", [
    ("nosuch", UnknownNameError, "unknown model 'nosuch'"),
    (42, UsageError, "cannot export a int"),
    ("m.onnx", UsageError, "already an exported file"),
    ("missing/best.pt", RtsegError, "missing/best.pt"),
    (None, UsageError, "name a MODEL or give --checkpoint"),
])
def test_a_bad_source_is_one_rtseg_error(tmp_path, source, error, match):
    with pytest.raises(error, match=match) as info:
        rtseg.export(source, tmp_path / "x.onnx", size=(32, 32))
    assert isinstance(info.value, RtsegError) and "\n" not in str(info.value)
    assert not (tmp_path / "x.onnx").exists()


def test_a_failed_check_is_an_rtseg_error_with_the_report(tmp_path, monkeypatch, capsys):
    import rtseg.deploy.export

    assert issubclass(ExportCheckError, RtsegError) and issubclass(ExportCheckError, ValueError)

    def differs(fmt, model, path, *args, **kwargs):
        raise ExportCheckError(f"{path}: output differs from PyTorch by 1")

    monkeypatch.setattr(rtseg.deploy.export, "compare", differs)
    path = tmp_path / "m.onnx"
    with pytest.raises(ExportCheckError) as info:
        rtseg.export("fpn_r18_bilinear", path, size=(32, 32), num_classes=2)
    assert info.value.report.onnx == path and path.is_file()
    # the command line: the report of what was written, the error, status 1
    assert main(["export", "fpn_r18_bilinear", "--onnx", str(path), "--size", "32", "32"]) == 1
    captured = capsys.readouterr()
    assert f"wrote {path}" in captured.out
    last = captured.err.strip().splitlines()[-1].split("\r")[-1]  # after the progress bar
    assert last == f"rtseg export: error: {path}: output differs from PyTorch by 1"
