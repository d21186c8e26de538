"""configs/: one recipe per model × data set, each valid, in step with its generator."""

from __future__ import annotations

from pathlib import Path

import pytest

from rtseg import create_model, list_models
from rtseg.training.config import load_config
from tools import make_configs

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ["cityscapes", "camvid", "ade20k", "pascal_context", "coco_stuff", "synthetic"]
CORE = ["cityscapes", "camvid", "synthetic"]  # every model has a recipe for these


def load_generator():
    return make_configs


def test_every_registered_model_has_a_recipe_family() -> None:
    generator = load_generator()
    missing = sorted(set(list_models()) - set(generator.FAMILY))
    assert not missing, f"no recipe in tools/make_configs.py FAMILY for {missing}"
    for model in generator.FAMILY:
        video = getattr(create_model(model, 2, aux=False), "temporal", False)
        core = [d for d in CORE if not (video and d == "synthetic")]  # no clips there
        assert set(core) <= set(generator.datasets_of(model)), model
        assert set(generator.datasets_of(model)) <= set(DATASETS), model


@pytest.mark.parametrize("dataset", DATASETS)
def test_every_model_has_a_valid_config(dataset: str) -> None:
    generator = load_generator()
    for model in list_models():
        if model not in generator.FAMILY:
            continue  # reported by test_every_registered_model_has_a_recipe_family
        if dataset not in generator.datasets_of(model):
            continue  # the family has no row for this data set
        path = ROOT / "configs" / dataset / f"{model}.yaml"
        assert path.is_file(), f"missing {path}"
        cfg = load_config(path, ["iters=7"])
        assert cfg.model == model and cfg.dataset == dataset and cfg.iters == 7
        assert cfg.val_split == "val"  # model selection never on test
        assert cfg.crop_size[0] > 0 and cfg.batch_size > 0 and cfg.lr > 0


def test_committed_configs_equal_the_generator_output(tmp_path: Path) -> None:
    generator = load_generator()
    written = generator.main(tmp_path)
    assert len(written) == sum(len(generator.datasets_of(m)) for m in generator.FAMILY)
    for path in written:
        committed = ROOT / "configs" / path.relative_to(tmp_path)
        assert committed.read_text() == path.read_text(), (
            f"{committed} is out of date: run python -m tools.make_configs")


def test_paper_recipes_hold_the_published_values() -> None:
    gain = load_config(ROOT / "configs/cityscapes/gain_r18.yaml")
    assert (gain.crop_size, gain.batch_size, gain.iters, gain.weight_decay) == (
        (1024, 1024), 16, 80000, 1e-4)
    assert gain.ohem_min_kept == 100000 and gain.head_lr_mult == 1.0
    ifa = load_config(ROOT / "configs/cityscapes/ifa_r50.yaml")
    assert (ifa.crop_size, ifa.batch_size, ifa.head_lr_mult) == ((769, 769), 8, 10.0)
    fanet = load_config(ROOT / "configs/cityscapes/fanet18.yaml")
    assert fanet.scale_range == (0.75, 2.0)
    assert fanet.ohem_min_kept == 1024 * 1024 // 16
    # simpleseg clanet_{r18,df2}_ade20k_train_160k_iters and clanet_df2_cityscapes_80000_iters
    for model in ("gain_r18", "gain_df2"):
        ade = load_config(ROOT / f"configs/ade20k/{model}.yaml")
        assert (ade.crop_size, ade.batch_size, ade.iters, ade.lr, ade.weight_decay) == (
            (512, 512), 16, 160000, 0.01, 1e-4)
        assert ade.warmup_iters == 0 and ade.ohem_min_kept == 100000
    df2 = load_config(ROOT / "configs/cityscapes/gain_df2.yaml")
    assert (df2.crop_size, df2.batch_size, df2.iters, df2.weight_decay) == (
        (1024, 1024), 16, 80000, 1e-4)
    assert load_config(ROOT / "configs/camvid/gain_df2.yaml").iters == 5000


def test_bad_config_names_the_file_and_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("model: fpn_r18_gai\nitters: 10\n")
    with pytest.raises(ValueError, match=r"bad\.yaml: unknown field\(s\) itters"):
        load_config(path)


def test_camvid_gain_config_builds_the_official_camvid_network() -> None:
    cfg = load_config(ROOT / "configs/camvid/gain_r18.yaml")
    model = create_model(cfg.model, 11, **cfg.model_kwargs)
    assert cfg.model_kwargs == {"dilate": False, "context": False, "fuse3x3": False}
    assert all(m.dilation == (1, 1) for m in model.backbone.layer4.modules()
               if hasattr(m, "dilation"))
    assert not any(k.startswith(("context.", "merge.1.")) for k in model.state_dict())


def test_gun_cityscapes_config_runs_at_half_resolution() -> None:
    """'Subsampling 2': the network sees half-size images in training and validation."""
    cfg = load_config(ROOT / "configs/cityscapes/gun.yaml")
    assert cfg.input_scale == 0.5 and cfg.val_scale == 0.5
    assert cfg.train_scale_range == (cfg.scale_range[0] / 2, cfg.scale_range[1] / 2)
    both = load_config(ROOT / "configs/cityscapes/gun.yaml", ["eval_scale=2.0"])
    assert both.val_scale == 1.0  # eval_scale is a factor on top of input_scale
    with pytest.raises(ValueError, match="input_scale"):
        load_config(None, ["input_scale=0"])
