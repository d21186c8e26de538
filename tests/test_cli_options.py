"""Every command-line option is checked as it is read: a bad value is one line on stderr naming
the option, exit status 2, before any model is built or file read (like the file fuzz test, for
options)."""

import argparse

import pytest

from rtseg.cli import build_parser, main

CKPT = "never-read.pt"  # parsing fails first, so no checkpoint is needed

# (argv, words the message must hold)
BAD = [
    (["export", "fanet18", "--onnx", "x.onnx", "--size", "0", "-5"],
     "argument --size: must be a positive integer, got '0'"),
    (["export", "fanet18", "--onnx", "x.onnx", "--size", "32", "x"], "got 'x'"),
    (["export", "fanet18", "--onnx", "x.onnx", "--batch", "0"], "argument --batch"),
    (["export", "fanet18", "--onnx", "x.onnx", "--num-classes", "0"], "argument --num-classes"),
    (["export", "fanet18", "--onnx", "x.onnx", "--opset", "7"],
     "argument --opset: must be an integer from 11 to 20, got '7'"),
    (["export", "fanet18", "--onnx", "x.onnx", "--opset", "99"], "from 11 to 20, got '99'"),
    (["export", "fanet18", "--onnx", "x.onnx", "--calib-images", "0"],
     "argument --calib-images"),
    (["export", "fanet18", "--onnx", "x.onnx", "--atol", "-1"],
     "argument --atol: must be a finite number >= 0, got '-1'"),
    (["export", "fanet18", "--onnx", "x.onnx", "--atol", "nan"], "got 'nan'"),
    (["bench", "fanet18", "--size", "0", "8"], "argument --size"),
    (["bench", "fanet18", "--batch", "-2"], "argument --batch: must be a positive integer"),
    (["bench", "fanet18", "--threads", "0"], "argument --threads"),
    (["bench", "fanet18", "--warmup", "0"], "argument --warmup"),
    (["bench", "fanet18", "--iters", "0"], "argument --iters"),
    (["bench", "--module", "gai", "--channels", "0"], "argument --channels"),
    (["bench", "fanet18", "--num-classes", "0"], "argument --num-classes"),
    (["bench", "fanet18", "--matmul-size", "0"], "argument --matmul-size"),
    (["bench", "fanet18", "--backend", "torch,foo"],
     "argument --backend: unknown name(s) 'foo'; use one or more of torch, onnxruntime"),
    (["bench", "fanet18", "--backend", ","], "argument --backend: unknown name(s) ','"),
    (["bench", "fanet18", "--precision", "fp8"], "argument --precision: invalid choice"),
    (["eval", CKPT, "--crop", "0", "8"], "argument --crop: must be a positive integer"),
    (["eval", CKPT, "--mode", "slide", "--crop", "8", "8", "--stride", "8", "-1"],
     "argument --stride"),
    (["eval", CKPT, "--scales", "0"], "argument --scales: must be a finite number > 0"),
    (["eval", CKPT, "--scales", "1", "nan"], "got 'nan'"),
    (["eval", CKPT, "--scales", "inf"], "got 'inf'"),
    (["eval", CKPT, "--short-side", "0"], "argument --short-side"),
    (["eval", CKPT, "--tolerance", "-1"], "argument --tolerance: must be an integer >= 0"),
    (["eval", CKPT, "--limit", "0"], "argument --limit"),
    (["eval", CKPT, "--biou-ratio", "-0.02"],
     "argument --biou-ratio: must be a finite number > 0, got '-0.02'"),
    (["eval", CKPT, "--biou-ratio", "0"], "argument --biou-ratio"),
    (["eval", CKPT, "--bf-ratio", "nan"], "argument --bf-ratio: must be a finite number > 0"),
    (["eval", CKPT, "--bf-protocol", "mean"], "argument --bf-protocol: invalid choice"),
    (["eval", CKPT, "--mode", "tiles"], "argument --mode: invalid choice"),
    (["predict", CKPT, "no-such-input.png"],
     "argument input: no-such-input.png: no such file or folder"),
    (["predict", CKPT, ".", "--max-frames", "0"], "argument --max-frames"),
    (["predict", CKPT, ".", "--every", "0"], "argument --every"),
    (["predict", CKPT, ".", "--scales", "-1"], "argument --scales"),
    (["info", "--size", "0", "1"], "argument --size"),
    (["info", "--num-classes", "0"], "argument --num-classes"),
    (["demo", "--iters", "0"], "argument --iters: must be a positive integer, got '0'"),
    (["demo", "--iters", "1.5"], "got '1.5'"),
    (["train", "iters=0"], "iters must be >= 1, got 0"),
]


@pytest.mark.parametrize("argv,words", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_a_bad_option_value_is_one_line_and_status_2(argv, words, capsys):
    try:
        status = main(argv)
    except SystemExit as e:  # argparse's own errors
        status = e.code
    err = capsys.readouterr().err
    assert status == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"rtseg {argv[0]}: error: ") and words in err, err


def _actions(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from ((f"{name} {a.dest}", a) for _, a in _actions(sub))
        else:
            yield action.dest, action


def test_no_numeric_option_is_read_without_a_check():
    unchecked = [name for name, action in _actions(build_parser())
                 if action.type in (int, float)]
    assert unchecked == []
    numeric = [name for name, action in _actions(build_parser())
               if getattr(action.type, "__module__", "") == "rtseg.cli.types"]
    assert len(numeric) >= 30  # every size, count, stride, scale and tolerance above
