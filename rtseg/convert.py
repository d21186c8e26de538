"""Official checkpoints → rtseg checkpoints: GAIN (simpleseg), FANet (``Train/``) and IFA.

Each source's state_dict keys are renamed by an explicit key map (below, one table per source,
read from the official model definitions: simpleseg ``models/segmentors/clanet.py``,
``layers/cross_layer_attention.py``, ``layers/cc_attention_op.py``; FANet
``Train/ptsemseg/models/fanet/{fanet,resnet}.py``; IFA ``pyseg/models/{fpn_ifa,ifa,ifa_utils,
model_helper,decoder}.py``). The rtseg model is built with the official-compatible options set
(``rtseg.model_options``), and the renamed weights are loaded into it strictly. Every official
key is accounted for: mapped, or dropped with its reason (the loss modules; FANet's two modules
built but never run). A key no rule knows, a missing or misshapen tensor is an error.

The model and its options are read from the weights where they show (backbone, head variant,
widths, class count). What weights cannot show, and its default:

* GAIN ResNet-18 ``dilate`` (layer4's dilation changes no shape): on when the head has the
  global context and the 3×3 fuse (the official ``*_gap_fuse3x3_dialted_cityscapes`` config),
  off otherwise (the CamVid config). The official ``*_gap_fuse3x3_cityscapes`` config (no
  dilation) needs ``options={"dilate": False}``.
* the data set (the class names and colours): the one whose class count matches (19
  Cityscapes, 11 CamVid, 150 ADE20K, 59 PASCAL-Context, 171 COCO-Stuff), else generic names.

All three official codes normalise RGB in [0, 1] by the ImageNet mean and std (IFA states it
in 0-255 units), as rtseg does, so a converted model sees the same input.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .errors import CheckpointError, ConfigError, InputNotFoundError, first_line

SOURCES = ("gain", "fanet", "ifa")
LOSS = "the loss module (rtseg's loss lives outside the model)"

Rule = tuple[str, str]  # (regex matched at the key's start, replacement of the matched part)


def _cbr(official: str, ours: str) -> list[Rule]:
    """A Sequential(conv, BN, ReLU) at ``official`` → a ConvBNAct at ``ours``."""
    return [(re.escape(official) + r"0\.", ours + "conv."), (re.escape(official) + r"1\.",
                                                             ours + "bn.")]


def _gain_rules(light: bool) -> list[Rule]:
    rules: list[Rule] = [(r"backbone\.", "backbone.")]  # the same ResNet / DFNetV2 layout
    for i in range(4):
        rules += _cbr(f"seg_head.fpn_in.{i}.", f"lateral.{i}.")
    rules += _cbr("seg_head.ppm.conv1.", "context.pooled.")
    rules += _cbr("seg_head.ppm.conv2.", "context.fuse.")
    for i, gai in enumerate(("gai4", "gai5")):
        src = f"seg_head.cross_layer_attentions.{i}."
        rules += [(re.escape(src + "conv1."), f"{gai}.query_source."),
                  (re.escape(src + "conv2."), f"{gai}.value_source."),
                  (re.escape(src + "attention.query_conv."), f"{gai}.attention.query."),
                  (re.escape(src + "attention.key_conv."), f"{gai}.attention.key."),
                  (re.escape(src + "attention.value_conv."), f"{gai}.attention.value."),
                  (re.escape(src + "attention.gamma"), f"{gai}.attention.gamma")]
        rules += _cbr(src + "bottleneck.", f"{gai}.fuse.")
    if light:  # CLALightHead.output: 1×1 CBR, 3×3 CBR, dropout, classifier
        rules += _cbr("seg_head.output.", "head.0.")
        rules += [(r"seg_head\.output\.3\.", "head.1.conv."), (r"seg_head\.output\.4\.",
                                                              "head.1.bn."),
                  (r"seg_head\.output\.7\.", "head.3.")]
    else:  # CLAHead: merge (1×1 CBR [+ 3×3 CBR]), output (1×1 CBR, dropout, classifier)
        rules += _cbr("seg_head.merge.", "merge.0.")
        rules += [(r"seg_head\.merge\.3\.", "merge.1.conv."), (r"seg_head\.merge\.4\.",
                                                              "merge.1.bn."),
                  (r"seg_head\.output\.4\.", "head.2.")]
        rules += _cbr("seg_head.output.", "head.0.")
    for i in range(2):  # AuxilaryHead.layers: conv3×3 (bias), BN, ReLU, dropout, classifier
        rules += [(rf"dsn\.{i}\.layers\.0\.", f"aux_heads.{i}.conv."),
                  (rf"dsn\.{i}\.layers\.1\.", f"aux_heads.{i}.bn."),
                  (rf"dsn\.{i}\.layers\.4\.", f"aux_heads.{i}.cls.")]
    return rules


_FANET_LEVELS = {"ffm_32": "level32", "ffm_16": "level16", "ffm_8": "level8", "ffm_4": "level4"}
_FANET_ATT = {"w_qs": "query", "w_ks": "key", "w_vs": "value", "latlayer3": "project"}


def _fanet_rules() -> list[Rule]:
    rules: list[Rule] = [(r"resnet\.", "backbone.")]  # FANet's ResNet: torchvision layout
    for src, ours in _FANET_LEVELS.items():
        for conv, att in _FANET_ATT.items():
            rules.append((rf"{src}\.{conv}\.", f"{ours}.attention.{att}."))
        rules += [(rf"{src}\.up\.", f"{ours}.up."), (rf"{src}\.smooth\.", f"{ours}.smooth.")]
    rules += [(r"clslayer_8\.conv\.", "head.0."), (r"clslayer_8\.conv_out\.", "head.1.")]
    for i, level in enumerate(("32", "16")):
        rules += [(rf"clslayer_{level}\.conv\.conv\.", f"aux_heads.{i}.conv."),
                  (rf"clslayer_{level}\.conv\.bn\.", f"aux_heads.{i}.bn."),
                  (rf"clslayer_{level}\.conv_out\.", f"aux_heads.{i}.cls.")]
    return rules


_FANET_DROPPED = {r"ffm_8\.smooth\.": "built but never run (level 8 passes only its up feature)",
                  r"ffm_4\.up\.": "built but never run (the finest level has nothing to pass up)",
                  r"loss_fn\.": LOSS}


def _ifa_rules(mlp_layers: int) -> list[Rule]:
    rules: list[Rule] = [(r"encoder\.", "backbone.")]  # ResNet-50-C: rtseg's deep-stem layout
    for i in range(3):
        rules += _cbr(f"decoder.enc{i + 1}.", f"encoders.{i}.")
    rules += _cbr("decoder.head.", "encoders.3.")  # no_aspp: 1×1 conv + BN + ReLU on x4
    rules += [(rf"decoder\.ifa\.pos{i + 1}\.emb", f"decoder.encodings.{i}.freqs")
              for i in range(4)]
    # imnet: Conv1d j at index 3j, its BatchNorm1d at 3j + 1 → first / rest.(3j − 1), rest.3j
    rules.append((r"decoder\.ifa\.imnet\.0\.", "decoder.first."))
    for j in range(1, mlp_layers):
        rules.append((rf"decoder\.ifa\.imnet\.{3 * j}\.", f"decoder.rest.{3 * j - 1}."))
    for j in range(mlp_layers - 1):
        rules.append((rf"decoder\.ifa\.imnet\.{3 * j + 1}\.", f"decoder.rest.{3 * j}."))
    rules += [(r"auxor\.aux\.0\.", "aux_head.conv."), (r"auxor\.aux\.1\.", "aux_head.bn."),
              (r"auxor\.aux\.4\.", "aux_head.cls.")]
    return rules


_UNSUPPORTED = {  # official variants rtseg does not build: refused, not silently dropped
    r"seg_head\.ppm\.(stages|bottleneck)\.": "GAIN's PSP context (CONTEXT: ppm)",
    r"decoder\.aspp\.": "IFA's ASPP head (no_aspp: False)",
    r"decoder\.ifa\.pos\d\.(row|col)_embed": "IFA's learned position embedding (learn_pe)",
}


@dataclass
class Conversion:
    """What :func:`convert_state_dict` did: the rtseg model and options, the weights (rtseg
    keys), and per official key that is not mapped, why (``dropped``); ``filled``: rtseg keys
    that the official file does not hold, with where their value comes from."""

    model: str
    options: dict[str, Any]
    num_classes: int
    state_dict: dict[str, torch.Tensor]
    mapped: int = 0
    dropped: dict[str, str] = field(default_factory=dict)
    filled: dict[str, str] = field(default_factory=dict)


def _rename(key: str, rules: Sequence[Rule]) -> str | None:
    for pattern, repl in rules:
        m = re.match(pattern, key)
        if m:
            return repl + key[m.end():]
    return None


def _detect(source: str, sd: dict[str, torch.Tensor], options: dict[str, Any]
            ) -> tuple[str, dict[str, Any], int, list[Rule], dict[str, str]]:
    """(model name, options, num_classes, key rules, dropped patterns) of an official dict."""
    if source == "gain":
        light = any(k.startswith("backbone.stage1.") for k in sd)
        head = "seg_head.output.7.weight" if light else "seg_head.output.4.weight"
        opts: dict[str, Any] = {"channels": _shape(sd, "seg_head.fpn_in.0.0.weight")[0],
                                "context": "seg_head.ppm.conv1.0.weight" in sd}
        if not light:
            opts["fuse3x3"] = "seg_head.merge.3.weight" in sd
            opts["dilate"] = opts["context"] and opts["fuse3x3"]
        return ("gain_df2" if light else "gain_r18", {**opts, **options}, _shape(sd, head)[0],
                _gain_rules(light), {r"criterion\.": LOSS})
    if source == "fanet":
        name = "fanet34" if "resnet.layer1.2.conv1.weight" in sd else "fanet18"
        opts = {"mean": False, "up_padding": True, "align_corners": True}
        return (name, {**opts, **options}, _shape(sd, "clslayer_8.conv_out.weight")[0],
                _fanet_rules(), _FANET_DROPPED)
    if source == "ifa":
        convs = sorted(int(m[1]) for k in sd
                       if (m := re.fullmatch(r"decoder\.ifa\.imnet\.(\d+)\.weight", k))
                       and sd[k].dim() == 3)
        if len(convs) < 2:
            raise CheckpointError("not an IFA state_dict (no decoder.ifa.imnet MLP)")
        widths = [_shape(sd, f"decoder.ifa.imnet.{i}.weight")[0] for i in convs]
        opts = {"channels": _shape(sd, "decoder.enc1.0.weight")[0], "hidden": widths[:-1],
                "align_corners": True}
        name = "ifa_r50" if "encoder.layer1.0.conv3.weight" in sd else "ifa_r18"
        return name, {**opts, **options}, widths[-1], _ifa_rules(len(convs)), {}
    raise ConfigError(f"unknown source {source!r}; one of {', '.join(SOURCES)}")


def _shape(sd: dict[str, torch.Tensor], key: str) -> tuple[int, ...]:
    if key not in sd:
        raise CheckpointError(f"not an official state_dict of this source: no {key!r}")
    return tuple(sd[key].shape)


def convert_state_dict(state_dict: dict[str, torch.Tensor], source: str, model: str | None = None,
                       options: dict[str, Any] | None = None) -> Conversion:
    """Rename an official state_dict for rtseg and load it strictly into the rtseg model.

    Args:
        state_dict: the official model's ``state_dict()`` (a ``module.`` prefix is removed).
        source: ``"gain"`` (simpleseg ``ResCLANet``/``DFCLANet``), ``"fanet"`` (``Train/``
            ``FANet``) or ``"ifa"`` (``ModelBuilder`` with ``fpn_ifa``).
        model: the rtseg model to build (default: read from the weights; FANet weights also
            fit ``fanet18_temp``/``fanet34_temp``).
        options: model options overriding the official-compatible ones read or set here.

    Raises ``CheckpointError`` naming the keys no rule maps, the missing or misshapen ones.
    """
    from .registry import create_model

    sd = {k.removeprefix("module."): v for k, v in state_dict.items()}
    for key in sd:
        refused = next((r for p, r in _UNSUPPORTED.items() if re.match(p, key)), None)
        if refused:
            raise CheckpointError(f"{key}: {refused} is not built in rtseg; cannot convert")
    name, opts, num_classes, rules, drop = _detect(source, sd, dict(options or {}))
    name = model or name
    net = create_model(name, num_classes, aux=True, **opts)
    expected = net.state_dict()
    out: dict[str, torch.Tensor] = {}
    conv = Conversion(name, opts, num_classes, out)
    unknown = []
    for key, value in sd.items():
        reason = next((r for p, r in drop.items() if re.match(p, key)), None)
        if reason:
            conv.dropped[key] = reason
            continue
        ours = _rename(key, rules)
        if ours is None or ours not in expected:
            unknown.append(key)
            continue
        want = expected[ours].shape
        if value.dim() == 3 and len(want) == 4 and want[-2:] == (1, 1):  # Conv1d → 1×1 Conv2d
            value = value.unsqueeze(-1)
        if value.shape != want:
            raise CheckpointError(f"{key} → {ours}: shape {tuple(value.shape)}, rtseg's "
                                  f"{name} expects {tuple(want)}")
        out[ours] = value
        conv.mapped += 1
    if unknown:
        raise CheckpointError(f"{len(unknown)} official key(s) that no {source} rule maps to "
                              f"rtseg's {name}: {', '.join(unknown[:5])}"
                              + (" …" if len(unknown) > 5 else ""))
    for key in expected.keys() - out.keys():
        if key.endswith("num_batches_tracked"):
            out[key], conv.filled[key] = expected[key], "not in the file (older torch): 0"
        elif re.fullmatch(r"decoder\.encodings\.\d\.freqs", key):  # require_grad: False
            out[key] = expected[key]
            conv.filled[key] = ("the official encoding was fixed (require_grad: False) at "
                                "2^linspace(0, 6, 6), rtseg's initial frequencies")
    missing = sorted(expected.keys() - out.keys())
    if missing:
        raise CheckpointError(f"the converted weights do not fit rtseg's {name}: "
                              f"{len(missing)} tensor(s) missing from the official file: "
                              f"{', '.join(missing[:5])}" + (" …" if len(missing) > 5 else ""))
    try:
        net.load_state_dict(out, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"the converted weights do not fit rtseg's {name} "
                              f"({first_line(e)})") from None
    return conv


_BY_COUNT = {19: "cityscapes", 11: "camvid", 150: "ade20k", 59: "pascal_context",
             171: "coco_stuff"}


def class_table(dataset: str | None, num_classes: int) -> tuple[str | None, list[str],
                                                                 list[tuple[int, int, int]]]:
    """(data set, class names, palette) for ``dataset`` (None: by the class count)."""
    from .data.ade20k import ADE20K_CLASSES, ADE20K_PALETTE
    from .data.camvid import CAMVID_CLASSES, CAMVID_PALETTE
    from .data.cityscapes import builtin_tables
    from .data.coco_stuff import COCO_STUFF_CLASSES, COCO_STUFF_PALETTE
    from .data.folder import default_palette
    from .data.pascal_context import PASCAL_CONTEXT_CLASSES, PASCAL_CONTEXT_PALETTE

    tables = {"cityscapes": tuple(builtin_tables()[1:]),
              "camvid": (CAMVID_CLASSES, CAMVID_PALETTE), "ade20k": (ADE20K_CLASSES,
                                                                     ADE20K_PALETTE),
              "pascal_context": (PASCAL_CONTEXT_CLASSES, PASCAL_CONTEXT_PALETTE),
              "coco_stuff": (COCO_STUFF_CLASSES, COCO_STUFF_PALETTE)}
    dataset = dataset or _BY_COUNT.get(num_classes)
    if dataset is None:
        return None, [f"class_{k}" for k in range(num_classes)], default_palette(num_classes)
    if dataset not in tables:
        raise ConfigError(f"unknown dataset {dataset!r} for class names; one of "
                          f"{', '.join(tables)}")
    names, palette = tables[dataset]
    if len(names) != num_classes:
        raise ConfigError(f"the checkpoint has {num_classes} classes, {dataset} has "
                          f"{len(names)}: pass the class names")
    return dataset, list(names), [tuple(c) for c in palette]


def read_official(path: str | Path, trust: bool = False) -> dict[str, torch.Tensor]:
    """The model state_dict of an official checkpoint file (``model`` in simpleseg's,
    ``model_state`` in FANet's and IFA's, or a bare state_dict). ``trust``: unpickle any
    object (only for files you trust; FANet's training files hold NumPy scalars)."""
    path = Path(path)
    if not path.is_file():
        raise InputNotFoundError(f"{path}: checkpoint not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=not trust)
    except Exception as e:  # noqa: BLE001 - pickles refused unread, truncated files
        hint = "" if trust else " (if you trust the file: --trust)"
        raise CheckpointError(f"{path}: cannot read ({type(e).__name__}: {first_line(e)})"
                              f"{hint}") from None
    if isinstance(obj, dict):
        for key in ("model", "model_state", "state_dict"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: no state_dict found (looked for 'model', "
                              "'model_state', 'state_dict' or a dict of tensors)")
    return obj


def convert(src: str | Path, dst: str | Path, source: str, *, model: str | None = None,
            options: dict[str, Any] | None = None, dataset: str | None = None,
            classes: Sequence[str] | None = None,
            palette: Sequence[Sequence[int]] | None = None, trust: bool = False) -> Conversion:
    """Write an rtseg checkpoint (read by :func:`rtseg.load`) for an official checkpoint.

    ``classes``/``palette`` override the data set's (their length must be the class count).
    """
    from .training.checkpoint import CHECKPOINT_FORMAT, save_atomic
    from .training.config import TrainConfig

    conv = convert_state_dict(read_official(src, trust), source, model, options)
    dataset, names, colours = class_table(dataset, conv.num_classes)
    names = list(classes) if classes is not None else names
    colours = [tuple(int(v) for v in c) for c in palette] if palette is not None else colours
    if len(names) != conv.num_classes or len(colours) != conv.num_classes:
        raise ConfigError(f"{len(names)} class names and {len(colours)} colours for a "
                          f"{conv.num_classes}-class checkpoint")
    cfg = TrainConfig(model=conv.model, model_kwargs=conv.options,
                      dataset=dataset or "folder",
                      extra={"converted_from": str(src), "source": source})
    save_atomic({"format": CHECKPOINT_FORMAT, "model": conv.state_dict, "config": cfg.to_dict(),
                 "num_classes": conv.num_classes, "classes": names,
                 "palette": [list(c) for c in colours],
                 "converted": {"source": source, "dropped": conv.dropped,
                               "filled": conv.filled}}, dst)
    return conv


__all__ = ["SOURCES", "Conversion", "class_table", "convert", "convert_state_dict",
           "read_official"]
