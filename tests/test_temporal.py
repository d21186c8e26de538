"""FANet +Temp: the clip call, the streaming call and FANet agree; clip data sets."""

from __future__ import annotations

import pytest
import torch

import rtseg


@pytest.fixture
def pair(randomise):
    torch.manual_seed(0)
    temp = randomise(rtseg.create_model("fanet18_temp", 5))
    plain = rtseg.create_model("fanet18", 5)
    plain.load_state_dict(temp.state_dict())  # the same parameter names
    return temp.eval(), plain.eval()


def test_a_frame_without_past_is_exactly_fanet(pair, one_thread):
    temp, plain = pair
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        expected = plain(x)
        assert torch.equal(temp(x), expected)
        assert torch.equal(temp(x[:, None]), expected)  # a clip of one frame
        assert torch.equal(temp.step(x)[0], expected)  # the first frame of a stream


def test_streaming_equals_the_clip_call(pair, one_thread):
    temp, _ = pair
    clip = torch.randn(2, 5, 3, 64, 96)
    state = None
    with torch.no_grad():
        for t in range(5):
            streamed, state = temp.step(clip[:, t], state)
            batched = temp(clip[:, : t + 1])
            assert (streamed - batched).abs().max() <= 1e-5, t
        assert len(state[0]) == temp.past == 1  # only the last `past` frames are kept
        # frames older than past + 1 do not matter; the past ones do
        changed = clip.clone()
        changed[:, :2] = torch.randn(2, 2, 3, 64, 96)
        assert torch.equal(temp(changed), temp(clip))
        changed[:, 3] = torch.randn(2, 3, 64, 96)
        assert not torch.allclose(temp(changed), temp(clip))


def test_clip_summation_is_the_formula(pair, one_thread):
    """Y_t = Q̂_t (Σ_τ K̂_τᵀV_τ) / Σ_τ n_τ: the attention over the frames' pixels side by side."""
    temp, _ = pair
    att = temp.level32.attention
    frames = [torch.randn(1, 512, 3, 4) for _ in range(3)]
    with torch.no_grad():
        s = sum(att.summary(f) for f in frames)
        got = att.attend(frames[-1], s, 3 * 12)
        # slow reference: keys/values of the three frames as one 3·12-pixel frame
        q = torch.nn.functional.normalize(att.query(frames[-1]).flatten(2), dim=1)[0]  # d×n
        k = torch.cat([torch.nn.functional.normalize(att.key(f).flatten(2), dim=1)[0]
                       for f in frames], dim=1)  # d×3n
        v = torch.cat([att.value(f).flatten(2)[0] for f in frames], dim=1)  # C×3n
        y = torch.einsum("dp,dq,cq->cp", q, k, v) / 36
        ref = frames[-1] + att.project(y.reshape(1, 512, 3, 4))
    assert (got - ref).abs().max() <= 1e-5


def test_training_on_clips_gives_gradients_through_the_past(one_thread):
    model = rtseg.create_model("fanet18_temp", 4, past=2).train()
    clip = torch.randn(2, 3, 3, 64, 64, requires_grad=True)
    logits, aux = model(clip)
    assert logits.shape == (2, 4, 64, 64) and len(aux) == 2
    logits.sum().backward()
    assert clip.grad[:, 0].abs().sum() > 0  # the oldest frame's keys and values learn
    with pytest.raises(ValueError, match="B×3×H×W or B×T×3×H×W"):
        model(torch.randn(2, 3, 4, 32, 32))


def _camvid_fixture(root, names, size=(32, 48)):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, stems in names.items():
        (root / split).mkdir(parents=True, exist_ok=True)
        (root / f"{split}annot").mkdir(parents=True, exist_ok=True)
        for stem in stems:
            Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(
                root / split / f"{stem}.png")
            Image.fromarray(rng.integers(0, 11, size, dtype=np.uint8)).save(
                root / f"{split}annot" / f"{stem}.png")


CAMVID_NAMES = {"train": ["0001TP_000030", "0001TP_000090", "0001TP_000060", "Seq05VD_f00000",
                          "Seq05VD_f00030", "0006R0_f01230"],
                "val": ["0016E5_00390", "0016E5_00420"]}


def test_camvid_clips_use_earlier_labelled_frames_of_the_same_drive(tmp_path):
    from rtseg.data import CamVid
    from rtseg.data.clips import camvid_clips
    from rtseg.data.transforms import train_transforms

    _camvid_fixture(tmp_path, CAMVID_NAMES)
    base = CamVid(tmp_path, "train")
    clips = camvid_clips(base, past=2)
    ctx = {base.name(i): [p.stem for p in clips.context[i]] for i in range(len(base))}
    assert ctx["0001TP_000090"] == ["0001TP_000030", "0001TP_000060"]
    assert ctx["0001TP_000060"] == ["0001TP_000030", "0001TP_000030"]
    assert ctx["0001TP_000030"] == ["0001TP_000030"] * 2  # the first frame repeated
    assert ctx["Seq05VD_f00030"] == ["Seq05VD_f00000"] * 2
    i = [base.name(k) for k in range(len(base))].index("0001TP_000030")
    clip, label = clips.load(i)
    assert clip.shape == (3, 3, 32, 48) and clip.dtype == torch.uint8
    assert torch.equal(clip[0], clip[2]) and torch.equal(label, base.load(i)[1])
    clips.transform = train_transforms((24, 24))
    x, y = clips[(i, 7)]
    assert x.shape == (3, 3, 24, 24) and y.shape == (24, 24)
    assert torch.equal(x[0], x[2])  # the same scale, crop, flip and jitter for every frame


def test_cityscapes_clips_read_the_sequence_snippets(tmp_path):
    import numpy as np
    from PIL import Image

    from rtseg.data import Cityscapes, DataError
    from rtseg.data.clips import cityscapes_clips

    img = Image.fromarray(np.zeros((16, 32, 3), np.uint8))
    (tmp_path / "leftImg8bit/val/ulm").mkdir(parents=True)
    (tmp_path / "gtFine/val/ulm").mkdir(parents=True)
    (tmp_path / "leftImg8bit_sequence/val/ulm").mkdir(parents=True)
    img.save(tmp_path / "leftImg8bit/val/ulm/ulm_000003_000019_leftImg8bit.png")
    Image.fromarray(np.zeros((16, 32), np.uint8)).save(
        tmp_path / "gtFine/val/ulm/ulm_000003_000019_gtFine_labelTrainIds.png")
    for f in (17, 18):
        Image.fromarray(np.full((16, 32, 3), f, np.uint8)).save(
            tmp_path / f"leftImg8bit_sequence/val/ulm/ulm_000003_{f:06d}_leftImg8bit.png")
    clips = cityscapes_clips(Cityscapes(tmp_path, "val"), past=2)
    clip, _ = clips.load(0)
    assert [int(f[0, 0, 0]) for f in clip] == [17, 18, 0]
    with pytest.raises(DataError, match=r"ulm_000003_000016_leftImg8bit.png: missing context"):
        cityscapes_clips(Cityscapes(tmp_path, "val"), past=3)


def test_temporal_model_trains_evaluates_and_streams_a_video(tmp_path, one_thread):
    import numpy as np

    from rtseg.predict import iter_frames, predict_path

    _camvid_fixture(tmp_path / "camvid", CAMVID_NAMES, size=(64, 64))
    (tmp_path / "camvid" / "val" / "x").mkdir()  # not an image: ignored by the loader
    run = rtseg.train({"model": "fanet18_temp", "dataset": "camvid",
                       "data_root": str(tmp_path / "camvid"), "crop_size": [64, 64],
                       "batch_size": 2, "iters": 2, "eval_interval": 2, "workers": 0},
                      out_dir=str(tmp_path / "runs"), run_name="t")
    res = rtseg.evaluate(run / "best.pt", split="val", device="cpu", progress=False)
    assert res["images"] == 2 and 0 <= res["miou"] <= 1
    seg = rtseg.load(run / "best.pt", device="cpu")
    video = tmp_path / "clip.mp4"
    import av

    rng = np.random.default_rng(1)
    with av.open(str(video), "w") as container:
        stream = container.add_stream("mpeg4", rate=5)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for _ in range(4):
            frame = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    predict_path(seg, video, tmp_path / "pred", progress=False)
    frames = torch.stack([f for _, f in iter_frames(video)])  # the decoded frames
    x = seg._prepare(frames)[0]  # normalised, 4×3×64×64
    for t in range(4):
        with torch.no_grad():
            expected = seg.model(x[max(0, t - 2): t + 1][None]).argmax(1)[0]
        from PIL import Image

        written = np.asarray(Image.open(tmp_path / "pred" / f"clip_{t:06d}_label.png"))
        assert np.array_equal(written, expected.numpy()), t


def test_bench_times_the_streaming_step():
    from rtseg.bench import benchmark

    rows = benchmark(["fanet18_temp"], size=(64, 64), iters=1, warmup=1, device="cpu",
                     reference=False)
    assert rows[0]["error"] is None and rows[0]["median_ms"] > 0


def test_temporal_camvid_study_compares_both_models(tmp_path, one_thread):
    import json

    from studies.temporal import run as script

    names = {**CAMVID_NAMES, "test": ["0001TP_008550", "0001TP_008580"]}
    _camvid_fixture(tmp_path / "camvid", names, size=(64, 64))
    argv = ["--data", str(tmp_path / "camvid"), "--out", str(tmp_path / "out"), "--iters", "2",
            "--crop", "64", "64", "--batch", "2", "--workers", "0", "--device", "cpu"]
    assert script.main(argv) == 0
    text = (tmp_path / "out" / "results.md").read_text()
    assert "| fanet18 | 0 |" in text and "| fanet18_temp | 0 |" in text
    res = json.loads((tmp_path / "out" / "fanet18_temp_s0" / "metrics_test.json").read_text())
    assert res["images"] == 2
