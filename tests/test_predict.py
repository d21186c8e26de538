"""Prediction on images, folders and videos; the eval and predict commands."""

import json

import numpy as np
import pytest
from PIL import Image

import rtseg
from rtseg.cli import main
from rtseg.predict import iter_frames, predict_path
from rtseg.training.config import make_config
from rtseg.training.trainer import run_training as train
from rtseg.viz import colorize


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    cfg = make_config(dict(model="fpn_r18_bilinear", dataset="synthetic", crop_size=[32, 48],
                           dataset_kwargs={"size": [32, 48],
                                           "num_images": dict(train=8, val=2, test=2)},
                           batch_size=4, iters=2, eval_interval=2, ckpt_interval=2, workers=0,
                           out_dir=str(out), run_name="tiny"))
    return train(cfg)


def _write_video(path, frames):
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=5)
        stream.width, stream.height, stream.pix_fmt = 48, 32, "yuv420p"
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_predict_image_folder_and_video(run, tmp_path):
    seg = rtseg.load(run / "best.pt", device="cpu")
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (32, 48, 3), dtype=np.uint8) for _ in range(3)]
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, f in enumerate(frames[:2]):
        Image.fromarray(f).save(folder / f"f{i}.png")
    video = tmp_path / "clip.mp4"
    _write_video(video, frames)

    out = predict_path(seg, folder / "f0.png", tmp_path / "one")
    assert [p.name for p in out] == ["f0_overlay.png"]
    label = Image.open(tmp_path / "one" / "f0_label.png")
    assert label.mode == "P" and label.size == (48, 32)
    assert np.asarray(label).max() < seg.num_classes

    assert len(predict_path(seg, folder, tmp_path / "dir")) == 2
    written = predict_path(seg, video, tmp_path / "vid")
    assert [p.name for p in written] == [f"clip_{i:06d}_overlay.png" for i in range(3)]


def test_predict_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match="notes.txt: not a folder, an image"):
        (tmp_path / "notes.txt").write_text("x")
        list(iter_frames(tmp_path / "notes.txt"))
    with pytest.raises(FileNotFoundError, match="nothing.png: input not found"):
        iter_frames(tmp_path / "nothing.png")  # checked before any frame is read
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty: no images"):
        list(iter_frames(tmp_path / "empty"))
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 100)
    with pytest.raises(ValueError, match="broken.mp4: cannot open video"):
        list(iter_frames(broken))


def test_colorize_uses_palette():
    label = np.array([[0, 1], [1, 0]], dtype=np.uint8)
    rgb = colorize(label, [(10, 20, 30), (40, 50, 60)])
    assert rgb[0, 1].tolist() == [40, 50, 60] and rgb[1, 1].tolist() == [10, 20, 30]


def test_eval_and_predict_commands(run, tmp_path, capsys):
    out_json = tmp_path / "m.json"
    assert main(["eval", str(run / "best.pt"), "--split", "test", "--json", str(out_json),
                 "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "mIoU" in printed and "road" in printed
    res = json.loads(out_json.read_text())
    assert res["split"] == "test" and 0 <= res["miou"] <= 1 and len(res["iou"]) == 8
    img = tmp_path / "x.png"
    Image.fromarray(np.zeros((32, 48, 3), np.uint8)).save(img)
    assert main(["predict", str(run / "best.pt"), str(img), "--out", str(tmp_path / "p"),
                 "--device", "cpu"]) == 0
    assert (tmp_path / "p" / "x_overlay.png").is_file()


def test_predict_writes_an_overlay_video(run, tmp_path, capsys):
    import av

    rng = np.random.default_rng(0)
    video = tmp_path / "clip.mp4"
    _write_video(video, [rng.integers(0, 255, (32, 48, 3), dtype=np.uint8) for _ in range(7)])
    out = tmp_path / "out" / "overlay.mp4"
    assert main(["predict", str(run / "best.pt"), str(video), "--out", str(out), "--every", "2",
                 "--max-frames", "3", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "3 frame(s) predicted" in printed and "FPS end to end" in printed
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        assert float(stream.average_rate) == pytest.approx(2.5)  # 5 fps input, every 2nd
    assert len(frames) == 3 and frames[0].shape == (32, 48, 3)
    # the first written frame is the overlay of the first input frame
    seg = rtseg.load(run / "best.pt", device="cpu")
    first = next(iter_frames(video))[1]
    expected = seg.overlay(first, seg(first))
    assert np.abs(frames[0].astype(int) - expected.astype(int)).mean() < 12  # lossy codec
    Image.fromarray(first.permute(1, 2, 0).numpy()).save(tmp_path / "x.png")
    assert main(["predict", str(run / "best.pt"), str(tmp_path / "x.png"), "--out",
                 str(tmp_path / "o.mp4")]) == 2  # a video out needs a video in
