"""Training: exact resume, DDP on CPU, configs, checkpoints, logs."""

import json
import os
import signal
import socket

import pytest
import torch
import torch.multiprocessing as mp

from rtseg import create_model
from rtseg.data import from_config
from rtseg.errors import CheckpointError, ConfigError
from rtseg.inference.evaluate import evaluate_dataset
from rtseg.training.checkpoint import load_checkpoint, save_atomic
from rtseg.training.config import load_config, make_config
from rtseg.training.optim import poly_lambda
from rtseg.training.trainer import run_training as train

TINY = dict(model="fpn_r18_bilinear", dataset="synthetic", crop_size=[32, 48],
            dataset_kwargs={"size": [32, 48], "num_images": dict(train=12, val=3, test=3)},
            batch_size=4,
            iters=6, eval_interval=3, ckpt_interval=3, log_interval=1, workers=0,
            loss="ohem", ohem_min_kept=500)


def tiny(tmp_path, **kw):
    return make_config({**TINY, "out_dir": str(tmp_path), **kw})


def weights(run):
    return load_checkpoint(run / "last.pt")["model"]


def test_resume_after_stop_gives_identical_weights(tmp_path):
    # 12 images / batch 4 = 3 iterations an epoch: the stop at 4 falls inside epoch 2.
    full = train(tiny(tmp_path, run_name="full", warmup_iters=2))
    train(tiny(tmp_path, run_name="cut", warmup_iters=2), stop_at=4)
    cut = tmp_path / "cut"
    assert load_checkpoint(cut / "last.pt")["iteration"] == 4
    train(tiny(tmp_path, run_name="cut", warmup_iters=2), resume=True)
    a, b = weights(full), weights(cut)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # and the stopped run alone differs (the test can fail)
    assert load_checkpoint(cut / "last.pt")["iteration"] == 6


def test_run_folder_log_plot_and_best_checkpoint(tmp_path):
    run = train(tiny(tmp_path, run_name="r"))
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if r["kind"] == "train"]
    val_rows = [r for r in rows if r["kind"] == "val"]
    assert [r["iter"] for r in train_rows] == [1, 2, 3, 4, 5, 6]
    assert [r["iter"] for r in val_rows] == [3, 6]
    assert all(r["split"] == "val" for r in val_rows)
    assert {"loss", "main", "aux1", "aux2", "lr", "img_per_s"} <= set(train_rows[0])
    assert (run / "plot.png").read_bytes()[:4] == b"\x89PNG"
    best = load_checkpoint(run / "best.pt")
    assert best["val_metrics"]["miou"] == max(r["miou"] for r in val_rows)
    assert best["classes"] and len(best["palette"]) == best["num_classes"]
    assert (run / "config.yaml").is_file()


def test_poly_schedule_with_warmup():
    cfg = make_config({"iters": 100, "warmup_iters": 10, "warmup_ratio": 0.1, "poly_power": 0.9})
    f = poly_lambda(cfg)
    assert f(0) == pytest.approx(0.1)
    assert f(5) == pytest.approx(0.55)
    assert f(50) == pytest.approx(0.5 ** 0.9)
    assert f(100) == 0.0


def test_config_file_overrides_and_errors(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: gain_r18\niters: 50\ncrop_size: [64, 128]\n")
    cfg = load_config(path, ["iters=7", "amp=true", "lr=0.02"])
    assert (cfg.model, cfg.iters, cfg.crop_size, cfg.amp, cfg.lr) == ("gain_r18", 7, (64, 128),
                                                                       True, 0.02)
    with pytest.raises(ValueError, match="unknown field.*itres"):
        load_config(path, ["itres=3"])
    with pytest.raises(ValueError, match="iters must be an integer"):
        load_config(path, ["iters=fast"])
    with pytest.raises(ValueError, match="crop_size must be a pair"):
        load_config(path, ["crop_size=3"])
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_config(tmp_path / "nope.yaml")
    path.write_text("model: [unclosed\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_config(path)


def test_atomic_save_keeps_old_file_on_failure(tmp_path):
    path = tmp_path / "ck.pt"
    save_atomic({"model": {"w": torch.ones(2)}, "config": {"model": "m"}, "num_classes": 2},
                path)

    class Boom:
        def __reduce__(self):
            raise RuntimeError("disk full")

    with pytest.raises(CheckpointError, match="ck.pt: cannot write checkpoint.*disk full"):
        save_atomic({"model": {}, "config": {}, "x": Boom()}, path)
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]  # no temporary left behind


def test_checkpoint_loading_is_safe_and_checked(tmp_path):
    bad = tmp_path / "bad.pt"
    torch.save({"model": {}, "config": {}, "obj": object()}, bad)  # needs unpickling code
    with pytest.raises(ValueError, match="bad.pt: cannot read checkpoint"):
        load_checkpoint(bad)
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, other)
    with pytest.raises(ValueError, match="not an rtseg checkpoint"):
        load_checkpoint(other)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world, port, cfg_values):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    train(make_config(cfg_values))


def test_two_process_gloo_ddp_run(tmp_path):
    values = {**TINY, "out_dir": str(tmp_path), "run_name": "ddp", "device": "cpu"}
    # An earlier test's DataLoader with workers leaves torch's SIGCHLD handler installed in
    # this process (torch.utils.data._utils.signal_handling never removes it); when the ranks
    # exited, that handler ran here and segfaulted the whole test run (7 of 7 full runs, no
    # Python traceback; never this test alone). With default handling during the spawn the
    # full run passes. The ranks are not DataLoader workers.
    previous = signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    try:
        mp.spawn(_ddp_worker, args=(2, _free_port(), values), nprocs=2, join=True)
    finally:
        signal.signal(signal.SIGCHLD, previous)
    ckpt = load_checkpoint(tmp_path / "ddp" / "last.pt")
    assert ckpt["iteration"] == 6
    assert len(ckpt["rng"]) == 2  # one RNG state per rank
    # Each rank evaluated part of the validation images; the reduced counts logged at the last
    # iteration cover every pixel, and the mIoU equals a single-process evaluation of the final
    # weights (up to argmax flips from the processes' different thread counts).
    rows = [json.loads(line) for line in (tmp_path / "ddp" / "log.jsonl").read_text().splitlines()]
    logged = [r for r in rows if r["kind"] == "val" and r["iter"] == 6][0]
    assert logged["pixels"] == TINY["dataset_kwargs"]["num_images"]["val"] * 32 * 48
    cfg = make_config(values)
    model = create_model(cfg.model, 8, aux=True)
    model.load_state_dict(ckpt["model"])
    res = evaluate_dataset(model, from_config(cfg, "val"))
    assert res["images"] == TINY["dataset_kwargs"]["num_images"]["val"]
    assert logged["miou"] == pytest.approx(res["miou"], abs=5e-3)


def test_sync_bn_on_cpu_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="sync_bn=true needs CUDA"):
        train(tiny(tmp_path, run_name="s", device="cpu", sync_bn=True))


def test_channels_last_trains_the_same_network(tmp_path):
    plain = train(tiny(tmp_path, run_name="plain", iters=2, eval_interval=2))
    nhwc = train(tiny(tmp_path, run_name="nhwc", iters=2, eval_interval=2, channels_last=True))
    a, b = weights(plain), weights(nhwc)
    assert any(v.dim() == 4 and v.is_contiguous(memory_format=torch.channels_last)
               and not v.is_contiguous() for v in b.values())
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-3, atol=1e-4, msg=k)
    restored = create_model("fpn_r18_bilinear", 8, aux=True)
    restored.load_state_dict(b)  # an NHWC checkpoint loads into a plain model


def test_dataset_kwargs_are_checked_and_old_synthetic_fields_still_read():
    with pytest.raises(ConfigError, match=r"dataset 'synthetic' has no option bogus; .*size"):
        make_config({"dataset": "synthetic", "dataset_kwargs": {"bogus": 1}})
    with pytest.raises(ConfigError, match="dataset_kwargs must be a mapping"):
        make_config({"dataset": "synthetic", "dataset_kwargs": [1]})
    old = make_config({"dataset": "synthetic", "synthetic_size": [32, 48], "seed": 3,
                       "synthetic_train_images": 5, "synthetic_val_images": 2})
    assert old.dataset_kwargs == {"size": [32, 48], "num_images": {"train": 5, "val": 2,
                                                                   "test": 2}, "seed": 3}
    lengths = {s: len(from_config(old, s)) for s in ("train", "val", "test")}
    assert lengths == {"train": 5, "val": 2, "test": 2}
    image, label = from_config(old, "val")[0]
    assert image.shape == (3, 32, 48) and label.shape == (32, 48)
    crop = from_config(old, "train", train=True)[(0, 0)][0]
    assert crop.shape == (3, *old.crop_size)
