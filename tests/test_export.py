"""rtseg export: every model to ONNX (checked in ONNX Runtime), TorchScript and torch.export."""

import argparse

import pytest
import torch

import rtseg
from rtseg import cli
from rtseg.cli import export as export_cli
from rtseg.deploy.export import (
    STATIC_ONLY,
    ExportCheckError,
    check_onnx,
    export_onnx,
    second_size,
)
from rtseg.deploy.torch_files import (
    check_program,
    check_torchscript,
    export_program,
    export_torchscript,
)
from rtseg.errors import UnknownNameError, UsageError
from rtseg.training.checkpoint import save_atomic

SIZE = (64, 128)


pytestmark = pytest.mark.usefixtures("one_thread")


def _cli(*argv: str) -> int:
    """``rtseg export ARGV`` through the subcommand's own parser, as ``rtseg.cli`` mounts it."""
    parser = argparse.ArgumentParser(prog="rtseg")
    export_cli.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["export", *argv])
    return args.func(args)


@pytest.mark.parametrize("name", rtseg.list_models())
def test_onnx_every_model_matches_pytorch(name, tmp_path, randomise):
    model = randomise(rtseg.create_model(name, 5, aux=False))
    # 1e-4 relative to the logits' range (as tests/test_runtimes.py): the peers' official
    # initialisation gives logits in the hundreds; every other model's stay below 1 (absolute)
    with torch.no_grad():
        atol = 1e-4 * max(1.0, model(torch.randn(1, 3, *SIZE)).abs().max().item())
    dynamic = name not in STATIC_ONLY
    path = export_onnx(model, tmp_path / f"{name}.onnx", SIZE, dynamic=dynamic)
    assert check_onnx(model, path, SIZE, atol=atol) <= atol
    if dynamic:  # a second, odd size and another batch on the same file
        assert second_size(SIZE) == (59, 117)
        assert check_onnx(model, path, second_size(SIZE), atol=atol, batch=2) <= atol


def test_check_onnx_reports_a_mismatch(tmp_path, randomise):
    model = randomise(rtseg.create_model("fpn_r18_bilinear", 5, aux=False))
    path = export_onnx(model, tmp_path / "m.onnx", SIZE)
    with torch.no_grad():
        model.head[2].bias.add_(1e-2)  # the PyTorch model changes after export
    with pytest.raises(ExportCheckError, match=r"differs from PyTorch by .*\(tolerance "
                       r"[0-9.e-]+ = 0.0001 × max\(1, largest \|logit\|\)\)"):
        check_onnx(model, path, SIZE)
    static = export_onnx(model, tmp_path / "s.onnx", SIZE, dynamic=False)
    with pytest.raises(ExportCheckError, match="cannot run it at 59×117"):
        check_onnx(model, static, (59, 117))


def test_check_onnx_tolerance_scales_with_the_logits(tmp_path, randomise):
    model = randomise(rtseg.create_model("fpn_r18_bilinear", 5, aux=False))
    with torch.no_grad():
        model.head[2].bias[0] = 1000.0  # logits near 1000: float32 steps of 6e-5 there
    path = export_onnx(model, tmp_path / "m.onnx", SIZE)
    with torch.no_grad():
        model.head[2].bias.add_(1e-2)  # 1e-5 of the logits: rounding, not a defect
    assert 9e-3 < check_onnx(model, path, SIZE) < 1.1e-2


@pytest.mark.parametrize("name, module", [("gun", "GUM"), ("fpn_r18_dysample", "DySample")])
def test_grid_sample_needs_opset_16(tmp_path, name, module):
    with pytest.raises(UsageError, match=rf"grid_sample \({module}\), which needs opset >= 16"):
        export_onnx(rtseg.create_model(name, 5), tmp_path / "g.onnx", SIZE, opset=15)


def test_onnx_carafe_after_training_steps(tmp_path, monkeypatch, randomise):
    # training takes the upsamplers' phase path (its own backward); the export records the
    # plain formula all the same, at any size
    from rtseg.upsample import reassembly

    calls: list[str] = []
    for name in ("_reassemble_phases", "_scatter_phases", "_similarity_phases"):
        fn = getattr(reassembly, name)
        monkeypatch.setattr(reassembly, name,
                            lambda *a, _fn=fn, _n=name: calls.append(_n) or _fn(*a))
    model = randomise(rtseg.create_model("fpn_r18_carafe", 5, aux=False)).train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    for _ in range(2):
        opt.zero_grad()
        logits, _ = model(torch.randn(2, 3, 64, 64))  # train mode: (main, aux outputs)
        torch.nn.functional.cross_entropy(logits, torch.randint(0, 5, (2, 64, 64))).backward()
        opt.step()
    assert calls.count("_scatter_phases") == 2 * 3 and model.training
    calls.clear()
    path = export_onnx(model, tmp_path / "carafe.onnx", (32, 64))
    assert calls == []
    for size in ((32, 64), second_size((32, 64))):
        assert check_onnx(model, path, size) <= 1e-4


def test_torchscript_round_trip(tmp_path, randomise):
    model = randomise(rtseg.create_model("fpn_r18_gum", 5, aux=False))
    path = export_torchscript(model, tmp_path / "m.pt", SIZE)
    for size in (SIZE, second_size(SIZE)):
        assert check_torchscript(model, path, size) <= 1e-5


def test_torch_export_round_trip(tmp_path, randomise):
    model = randomise(rtseg.create_model("gun", 5, aux=False))
    path, ranges = export_program(model, tmp_path / "m.pt2", SIZE)
    assert ranges["B"] == ranges["C"] == "static"
    assert ranges["H"] != "static" and ranges["W"] != "static"
    for size in (SIZE, second_size(SIZE)):
        assert check_program(model, path, size) <= 1e-5


def test_cli_with_checkpoint(tmp_path, capsys, randomise):
    model = randomise(rtseg.create_model("fpn_r18_gai", 4))
    ckpt = tmp_path / "ckpt.pt"
    save_atomic({"model": model.state_dict(), "config": {"model": "fpn_r18_gai"},
                 "num_classes": 4}, ckpt)
    out = tmp_path / "m.onnx"
    assert _cli("--checkpoint", str(ckpt), "--onnx", str(out), "--size", *map(str, SIZE)) == 0
    text = capsys.readouterr().out
    assert "fpn_r18_gai" in text and "59×117" in text
    assert check_onnx(model, out, SIZE) <= 1e-4  # the checkpoint's weights were exported
    with pytest.raises(UsageError, match="holds a 'fpn_r18_gai' model, not 'gun'"):
        _cli("gun", "--checkpoint", str(ckpt), "--onnx", str(out))
    with pytest.raises(UnknownNameError, match="unknown model 'nope'"):
        _cli("nope", "--onnx", str(out))
    with pytest.raises(UsageError, match="nothing to write"):
        _cli("gun")
    with pytest.raises(UsageError, match="name a MODEL or give --checkpoint"):
        _cli("--onnx", str(out))
    assert cli.main(["export", "gun"]) == 2  # through the command line: one line, status 2
    assert capsys.readouterr().err.startswith("rtseg export: error: nothing to write")


def test_cli_failed_check_exits_1(tmp_path, capsys, monkeypatch):
    import rtseg.deploy.export

    def differs(*args, **kwargs):
        raise rtseg.deploy.export.ExportCheckError("m.pt: max |diff| 1 > atol")

    monkeypatch.setattr(rtseg.deploy.export, "compare", differs)
    path = tmp_path / "m.pt"
    assert _cli("fpn_r18_bilinear", "--torchscript", str(path), "--size", *map(str, SIZE),
                "--static") == 1
    assert path.is_file()
    assert "rtseg export: error: m.pt: max |diff| 1 > atol" in capsys.readouterr().err
