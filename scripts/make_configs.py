"""Write configs/{dataset}/{model}.yaml: one training recipe per model × data set.

The recipes live here as small tables so that they stay consistent; the YAML files are what
users read, copy and pass to ``rtseg train --config``. ``tests/test_configs.py`` checks that
the committed files equal this script's output, so edit the tables and run::

    python scripts/make_configs.py

Sources: ``../shared/spec/anchors.md`` §1.4 (GAIN), §2.3 (FANet), §3.4 (IFA), §4.3 (GUN).
Where a paper's Cityscapes recipe is given, the Cityscapes file follows it; the CamVid files
keep each paper's optimiser, loss and schedule shape and adapt crop and OHEM counts to the
480×360 SegNet frames (scaled by pixel count). Models are always selected on ``val``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rtseg import list_models  # noqa: E402

FPN = [m for m in list_models() if m.startswith("fpn_r18_")]

# Per data set: the fields every model shares.
DATASET = {
    "cityscapes": {"dataset": "cityscapes", "data_root": "data/cityscapes",
                   "eval_interval": 4000, "ckpt_interval": 1000, "log_interval": 50},
    "camvid": {"dataset": "camvid", "data_root": "../shared/data/camvid",
               "eval_interval": 1000, "ckpt_interval": 500, "log_interval": 20},
    "synthetic": {"dataset": "synthetic", "synthetic_size": [128, 256],
                  "eval_interval": 100, "ckpt_interval": 100, "log_interval": 10},
}

# (header comment, fields) per recipe family and data set.
GAIN = {
    "cityscapes": ("GAIN (simpleseg clanet_r18 *_cityscapes_80000_iters): SGD 0.9, wd 1e-4, "
                   "lr 0.01 for all, poly 0.9 per iteration, no warm-up, global batch 16, crop "
                   "1024×1024, scale 0.5-2, OHEM 0.7 with 100000 pixels per image, aux 1.0 + "
                   "1.0. Not reproduced: Gaussian blur and hue jitter.",
                   {"crop_size": [1024, 1024], "batch_size": 16, "iters": 80000, "lr": 0.01,
                    "weight_decay": 1e-4, "warmup_iters": 0, "ohem_min_kept": 100000,
                    "sync_bn": True}),
    "camvid": ("GAIN (clanet_r18_camvid_10000_iters) adapted: the paper trains 960×720 frames on "
               "train+val and selects on test; here 480×360 frames, train only, selected on "
               "val. OHEM count scaled by pixels (100000 at 960×720 -> 25000).",
               {"crop_size": [360, 480], "batch_size": 16, "iters": 10000, "lr": 0.01,
                "weight_decay": 1e-4, "warmup_iters": 0, "ohem_min_kept": 25000}),
}
FANET = {
    "cityscapes": ("FANet (paper, as reported in the official repository's issue #11): SGD 0.9, "
                   "wd 5e-4, lr 0.01 poly 0.9, batch 16, crop 1024×1024, scale 0.75-2, flip, "
                   "OHEM 0.7 with crop/16 pixels per image, aux 0.5 + 0.5, 80k iterations.",
                   {"crop_size": [1024, 1024], "scale_range": [0.75, 2.0], "batch_size": 16,
                    "iters": 80000, "lr": 0.01, "weight_decay": 5e-4, "warmup_iters": 1000,
                    "ohem_min_kept": 65536, "sync_bn": True}),
    "camvid": ("FANet recipe on CamVid frames: crop 360×480, OHEM crop/16 pixels per image.",
               {"crop_size": [360, 480], "scale_range": [0.75, 2.0], "batch_size": 16,
                "iters": 10000, "lr": 0.01, "weight_decay": 5e-4, "warmup_iters": 500,
                "ohem_min_kept": 10800}),
}
IFA = {
    "cityscapes": ("IFA (official train.py): SGD 0.9, wd 5e-4, lr 0.01 encoder / 0.1 decoder "
                   "(head_lr_mult 10), poly 0.9, no warm-up, batch 8, crop 769×769, scale 0.5-2, "
                   "OHEM 0.7 with 100000 pixels per 2 images, aux 0.4, 100 epochs (~37k "
                   "iterations), SyncBN. Not reproduced: the loss / world_size quirk and label "
                   "padding with 0 (rtseg pads with 255).",
                   {"crop_size": [769, 769], "batch_size": 8, "iters": 37200, "lr": 0.01,
                    "head_lr_mult": 10.0, "weight_decay": 5e-4, "warmup_iters": 0,
                    "ohem_min_kept": 50000, "sync_bn": True, "eval_mode": "slide",
                    "eval_crop": [769, 769]}),
    "camvid": ("IFA recipe on CamVid frames: crop 360×480, OHEM count scaled by pixels.",
               {"crop_size": [360, 480], "batch_size": 8, "iters": 10000, "lr": 0.01,
                "head_lr_mult": 10.0, "weight_decay": 5e-4, "warmup_iters": 0,
                "ohem_min_kept": 14600}),
}
GUN = {
    "cityscapes": ("GUN: the paper gives SGD with momentum, batch 8, random scaling and colour "
                   "jitter, at half resolution (512×1024 input); lr, schedule and length are "
                   "not published, so rtseg's choices fill them in (lr 0.01 poly, wd 5e-4, "
                   "warm-up 1000, 80k iterations, OHEM 0.7).",
                   {"crop_size": [512, 1024], "batch_size": 8, "iters": 80000, "lr": 0.01,
                    "weight_decay": 5e-4, "warmup_iters": 1000, "ohem_min_kept": 32768}),
    "camvid": ("GUN recipe (batch 8, scaling + colour jitter; the rest rtseg's choice).",
               {"crop_size": [360, 480], "batch_size": 8, "iters": 10000, "lr": 0.01,
                "weight_decay": 5e-4, "warmup_iters": 500, "ohem_min_kept": 10800}),
}
RTSEG = {
    "cityscapes": ("rtseg's shared recipe for the fpn_r18_* head (one recipe for every "
                   "upsampler, so only the upsampler changes): SGD 0.9, wd 5e-4, lr 0.01 poly "
                   "0.9 with 1000 warm-up iterations, batch 16, crop 1024×1024, scale 0.5-2, "
                   "OHEM 0.7 with crop/16 pixels per image, aux 0.4 + 0.4.",
                   {"crop_size": [1024, 1024], "batch_size": 16, "iters": 80000, "lr": 0.01,
                    "weight_decay": 5e-4, "warmup_iters": 1000, "ohem_min_kept": 65536,
                    "sync_bn": True}),
    "camvid": ("rtseg's shared recipe on CamVid: crop 360×480, scale 0.5-2, batch 8.",
               {"crop_size": [360, 480], "batch_size": 8, "iters": 10000, "lr": 0.01,
                "weight_decay": 5e-4, "warmup_iters": 500, "ohem_min_kept": 10800}),
}
SYNTHETIC = ("The built-in synthetic street scenes: a few CPU minutes, the same for every model.",
             {"crop_size": [128, 256], "batch_size": 8, "iters": 300, "lr": 0.01,
              "weight_decay": 5e-4, "warmup_iters": 30, "ohem_min_kept": 2048})

FAMILY = {"gain_r18": GAIN, "fanet18": FANET, "fanet34": FANET, "ifa_r18": IFA, "ifa_r50": IFA,
          "gun": GUN, **{m: RTSEG for m in FPN}}


def recipe(model: str, dataset: str) -> tuple[str, dict[str, Any]]:
    """(comment, fields) of ``model`` on ``dataset``."""
    note, fields = SYNTHETIC if dataset == "synthetic" else FAMILY[model][dataset]
    return note, {"model": model, **DATASET[dataset], **fields}


def render(model: str, dataset: str) -> str:
    import textwrap

    import yaml

    note, fields = recipe(model, dataset)
    comment = "\n".join("# " + line for line in textwrap.wrap(note, 96))
    usage = f"# rtseg train --config configs/{dataset}/{model}.yaml [key=value ...]"
    body = yaml.safe_dump(fields, sort_keys=False, default_flow_style=None)
    return f"{comment}\n{usage}\n{body}"


def main(out: Path = ROOT / "configs") -> list[Path]:
    written = []
    for dataset in DATASET:
        for model in FAMILY:
            path = out / dataset / f"{model}.yaml"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(render(model, dataset))
            written.append(path)
    return written


if __name__ == "__main__":
    paths = main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "configs")
    print(f"wrote {len(paths)} configs")
