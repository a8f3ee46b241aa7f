"""Video through scripts/predict.py: a generated clip segmented into an overlaid video whose frames are the
per-image predictions, the frame rates recorded, and a missing, unreadable or absent source named in one line."""

import json

import cv2
import numpy as np
import pytest
import torch

from deeplab_mobile.apps.predict import main as predict_main
from deeplab_mobile.data.synthetic import CLASS_NAMES
from deeplab_mobile.models import build_model
from deeplab_mobile.models.pretrained import ModelFile, save_model_file
from deeplab_mobile.predict import Segmenter
from deeplab_mobile.video import segment_video, write_clip

SIZE = (72, 96)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model(head="no_aspp", width=0.35, num_classes=len(CLASS_NAMES)).eval()
    config = {
        "encoder": "mobilenet_v2",
        "head": "no_aspp",
        "output_stride": 16,
        "width": 0.35,
        "tap": "second_last",
        "num_classes": len(CLASS_NAMES),
        "bn": "torch",
        "geometry": "torch",
    }
    info = ModelFile(config, model.encoder.mean, model.encoder.std, CLASS_NAMES, source="test")
    return save_model_file(tmp_path_factory.mktemp("file") / "m.pt", model, info)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", frames=5, size=SIZE, fps=10)


def frames_of(path):
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            return frames
        frames.append(frame)


def test_generated_clip_is_a_readable_video(clip):
    frames = frames_of(clip)
    assert len(frames) == 5 and frames[0].shape == (*SIZE, 3)
    assert not np.array_equal(frames[0], frames[-1])  # the window pans


def test_overlaid_video_holds_each_frames_prediction(model_file, clip, tmp_path):
    segmenter = Segmenter.from_pretrained(model_file)
    record = segment_video(segmenter, str(clip), tmp_path, progress=False, pad_to=97)
    written = frames_of(record["output"])
    assert record["frames"] == len(written) == 5 and record["frame_size"] == list(SIZE)
    assert record["fps_model"] > 0 and record["fps_total"] > 0 and record["model_ms"]["repeats"] == 5
    # frame 3 of the output is frame 3 of the clip overlaid with its own prediction (up to the video codec's loss)
    source = cv2.cvtColor(frames_of(clip)[3], cv2.COLOR_BGR2RGB)
    expected = segmenter.overlay(source, segmenter.predict(source, pad_to=97))
    got = cv2.cvtColor(written[3], cv2.COLOR_BGR2RGB)[:, : SIZE[1]]
    assert got.shape == expected[:, : SIZE[1]].shape
    assert np.abs(got.astype(int) - expected[:, : SIZE[1]].astype(int)).mean() < 12


def test_predict_script_on_a_clip_and_bad_sources(model_file, clip, tmp_path, capsys):
    out = tmp_path / "out"
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video" * 10)
    args = [str(clip), str(bad), str(tmp_path / "missing.mp4"), "97", "--weights", str(model_file)]
    status = predict_main([*args, "--out", str(out), "--no-progress", "--threads", "1", "--max-frames", "3"])
    assert status == 1
    captured = capsys.readouterr()
    assert f"{clip}: 3 frames of 96x72" in captured.out and "threads 1" in captured.out
    err = captured.err.splitlines()
    assert f"error: {bad}: cannot be opened as a video" in err
    assert f"error: {tmp_path / 'missing.mp4'}: video not found" in err
    assert "error: camera 97: not available (no such device, or no access to it)" in err
    record = json.loads((out / "predictions.json").read_text())
    assert [v["frames"] for v in record["videos"]] == [3] and len(record["errors"]) == 3
    assert len(frames_of(out / "clip_overlay.mp4")) == 3 and not (out / "broken_overlay.mp4").exists()


def test_video_frames_can_be_tiled(model_file, clip, tmp_path):
    """Tiling reaches the video path through Segmenter.predict: a window covering the frame gives the untiled
    frames exactly; smaller windows run and record their settings."""
    from deeplab_mobile.engine.tiling import Tiling

    segmenter = Segmenter.from_pretrained(model_file)
    source = cv2.cvtColor(frames_of(clip)[2], cv2.COLOR_BGR2RGB)
    whole = segmenter.predict(source, max_size=None, pad_to=1)
    assert np.array_equal(segmenter.predict(source, max_size=None, pad_to=1, tile=Tiling(max(SIZE))), whole)
    record = segment_video(segmenter, str(clip), tmp_path, progress=False, max_size=None, pad_to=1, tile=Tiling(49))
    assert record["frames"] == len(frames_of(record["output"])) == 5
    status = predict_main(
        [
            str(clip),
            "--weights",
            str(model_file),
            "--out",
            str(tmp_path / "cli"),
            "--no-progress",
            "--tile",
            "49",
            "--tile-overlap",
            "0.5",
            "--tile-blend",
            "mean",
            "--max-frames",
            "2",
        ]
    )
    assert status == 0
    saved = json.loads((tmp_path / "cli" / "predictions.json").read_text())
    assert saved["tile"] == {"size": [49, 49], "overlap": 0.5, "blend": "mean"} and saved["max_size"] == 0
