"""Model files (``weights=FILE``) through every app: eval, train, export and predict, and ``scripts/predict.py`` on a
folder with an unreadable image."""

import json
import logging
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from deeplab_mobile.apps.evaluate import evaluate_run
from deeplab_mobile.apps.export import export
from deeplab_mobile.apps.predict import main as predict_main
from deeplab_mobile.apps.train import TrainingRun, train
from deeplab_mobile.config.source import open_run
from deeplab_mobile.data import Normalize
from deeplab_mobile.data.base import read_image
from deeplab_mobile.data.synthetic import CLASS_NAMES
from deeplab_mobile.data.voc import read_mask
from deeplab_mobile.deploy import randomize_batchnorm
from deeplab_mobile.errors import ProjectError
from deeplab_mobile.models import build_model
from deeplab_mobile.models.pretrained import ModelFile, save_model_file
from deeplab_mobile.predict import Segmenter
from tests.helpers import ROOT, composed, folder_train, tiny, write_folder_dataset

pytestmark = pytest.mark.slow  # model files through train, eval, export and predict end to end

DEEPLAB = {
    "encoder": "mobilenet_v2",
    "head": "no_aspp",
    "output_stride": 16,
    "width": 0.35,
    "tap": "second_last",
    "num_classes": 21,
    "bn": "deeplab",
    "geometry": "deeplab",
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, synthetic_voc):
    """A few iterations of training, and the same network and weights as a model file."""
    out = tmp_path_factory.mktemp("run")
    train(tiny(synthetic_voc, "eval.mf=false", "eval.os=16", "trainer.eval_every=100"), out)
    model = open_run(out).model
    config = {**DEEPLAB, "bn": "torch", "geometry": "torch"}
    info = ModelFile(config, model.encoder.mean, model.encoder.std, CLASS_NAMES, source="test run")
    path = save_model_file(out / "as_file.pt", model, info)
    return out, path


@pytest.fixture(scope="module")
def deeplab_file(tmp_path_factory):
    """A model file under DeepLab's conventions (geometry, BatchNorm, (x - 127.5) / 127.5), random weights."""
    torch.manual_seed(0)
    model = build_model(**DEEPLAB, mean=(0.5,) * 3, std=(0.5,) * 3)
    randomize_batchnorm(model, torch.Generator().manual_seed(0))
    info = ModelFile(DEEPLAB, (0.5,) * 3, (0.5,) * 3, CLASS_NAMES, source="test")
    return save_model_file(tmp_path_factory.mktemp("file") / "mnv2.pt", model.eval(), info)


def file_eval(path, synthetic_voc, out_dir, *extra):
    return evaluate_run(
        composed(
            "eval",
            [
                f"weights={path}",
                "data=synthetic",
                f"data.root={synthetic_voc}",
                "data.generate=null",
                "eval.pad_to=65",
                "eval.workers=0",
                f"out_dir={out_dir}",
                "progress=false",
                *extra,
            ],
        )
    )


def test_eval_of_a_model_file_scores_as_its_run(trained, synthetic_voc, tmp_path):
    """The run's network saved as a model file and evaluated with weights=FILE on the run's data scores exactly as
    the run folder does; the record lands under out_dir, named from the settings and the data."""
    run, path = trained
    by_run = evaluate_run(composed("eval", [f"run_dir={run}", "eval.mf=false", "eval.workers=0", "progress=false"]))
    by_file = file_eval(path, synthetic_voc, tmp_path, "eval.mf=false")
    assert by_file["ss"]["miou"] == by_run["ss"]["miou"] and by_file["ss"]["iou"] == by_run["ss"]["iou"]
    record = tmp_path / "os16_synthetic-val" / "metrics.json"
    saved = json.loads(record.read_text())
    assert saved["weights"] == str(path) and saved["source"] == "test run" and saved["eval"]["pad_to"] == 65


def test_eval_of_a_model_file_runs_the_model_zoo_protocol(deeplab_file, synthetic_voc, tmp_path):
    result = file_eval(deeplab_file, synthetic_voc, tmp_path, "eval.mf_os=8", "eval.mf_scales=[0.75,1.0]")
    assert result["geometry"] == "deeplab" and result["os"] == 16
    assert result["eval"] == {"os": 16, "mf": True, "mf_os": 8, "mf_scales": [0.75, 1.0], "flip": True, "pad_to": 65}
    assert (tmp_path / "os16_mf-os8-0.75-1-flip_synthetic-val" / "per_class_iou.csv").is_file()
    with pytest.raises(ValueError, match="one of run_dir"):
        evaluate_run(composed("eval", ["eval.workers=0"]))


def test_training_starts_from_every_weight_of_a_model_file(deeplab_file, synthetic_voc, tmp_path):
    """weights=FILE: the run's network is the file's (geometry, BatchNorm, normalisation), recorded in the run's
    config so that the run folder rebuilds it without the file, and starts from the file's weights (LR 0 keeps
    them)."""
    train(tiny(synthetic_voc, f"weights={deeplab_file}", "optim.lr=0", "trainer.iters=2", "eval.mf=false"), tmp_path)
    shutil.copy(deeplab_file, tmp_path / "moved.pt")
    deeplab_file.rename(deeplab_file.with_suffix(".away"))
    try:
        model = open_run(tmp_path).model
    finally:
        deeplab_file.with_suffix(".away").rename(deeplab_file)
    assert model.geometry == "deeplab" and model.encoder.mean == (0.5, 0.5, 0.5)
    assert model.encoder.features[0][1].eps == 1e-3 and model.head.project[1].eps == 1e-5
    file_state = torch.load(deeplab_file, weights_only=True)["state_dict"]
    for key in ("encoder.features.0.0.weight", "encoder.features.9.conv.1.0.weight", "head.classifier.bias"):
        assert torch.equal(model.state_dict()[key], file_state[key]), key


def test_a_model_file_decides_the_network(deeplab_file, synthetic_voc, tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "scripts/train.py",
            f"weights={deeplab_file}",
            "width=0.5",
            "recipe=cpu_synthetic",
            f"data.root={synthetic_voc}",
            "data.generate=null",
            f"hydra.run.dir={tmp_path / 'clash'}",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1
    assert "decides the network" in output and "drop width" in output and "Traceback" not in output


def test_export_of_a_model_file(deeplab_file, tmp_path):
    info = export(composed("export", [f"weights={deeplab_file}", "size=[65,65]"]), tmp_path)
    assert info["geometry"] == "deeplab" and info["input"]["mean"] == [0.5, 0.5, 0.5]
    assert info["classes"] == list(CLASS_NAMES) and info["parity"][0]["max_abs_diff"] <= 1e-4


def test_predict_is_the_models_own_forward(trained, synthetic_voc):
    """A generated image larger than the padding size, native resolution: the prediction is the argmax of the plain
    forward pass of the normalised image."""
    run, path = trained
    segmenter = Segmenter.from_pretrained(path)
    image = read_image(next((synthetic_voc / "JPEGImages").iterdir()))
    labels = segmenter.predict(image, pad_to=65, max_size=None)
    model = open_run(run).model.eval()
    with torch.no_grad():
        plain = model(Normalize(model.encoder.mean, model.encoder.std)(torch.from_numpy(image)[None]))
    expected = plain.argmax(1)[0].numpy()
    assert labels.shape == image.shape[:2] and labels.dtype == np.uint8
    assert np.mean(labels == expected) >= 0.999
    # scaled down (max_size) and back: the same size out, mostly the same answer
    small = segmenter.predict(image, pad_to=65, max_size=image.shape[1] // 2)
    assert small.shape == labels.shape and np.mean(small == labels) > 0.5
    mf = segmenter.predict_probs(image, scales=(0.75, 1.0), flip=True, pad_to=65)
    assert mf.shape == (21, *image.shape[:2]) and torch.allclose(mf.sum(0), torch.ones(image.shape[:2]))


def test_predict_with_an_onnx_export_agrees_with_pytorch(trained, synthetic_voc, tmp_path):
    run, path = trained
    export(composed("export", [f"weights={path}", "size=[65,65]", "dynamic=true", "parity.sizes=[[65,65]]"]), tmp_path)
    image = read_image(next((synthetic_voc / "JPEGImages").iterdir()))
    ours = Segmenter.from_pretrained(path).predict(image, pad_to=65, max_size=None)
    onnx = Segmenter.from_pretrained(tmp_path / "model.onnx")
    assert onnx.classes == CLASS_NAMES
    assert np.mean(onnx.predict(image, pad_to=65, max_size=None) == ours) >= 0.999


def test_predict_script_on_a_folder_with_an_unreadable_image(deeplab_file, synthetic_voc, tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    for src in sorted((synthetic_voc / "JPEGImages").iterdir())[:3]:
        shutil.copy(src, photos / src.name)
    (photos / "broken.jpg").write_bytes(b"not a jpeg at all")
    out = tmp_path / "out"
    status = predict_main([str(photos), "--weights", str(deeplab_file), "--out", str(out), "--no-progress"])
    assert status == 1
    err = capsys.readouterr().err
    assert str(photos / "broken.jpg") in err and "unreadable image" in err
    record = json.loads((out / "predictions.json").read_text())
    assert len(record["images"]) == 3 and [e["image"] for e in record["errors"]] == [str(photos / "broken.jpg")]
    for item in record["images"]:
        image = read_image(item["image"])
        mask = read_mask(out / item["mask"])  # a palette PNG that reads back as class indices
        assert mask.shape == image.shape[:2]
        overlay = cv2.imread(str(out / item["mask"].replace(".png", "_overlay.jpg")))
        assert overlay.shape[0] == image.shape[0] and overlay.shape[1] > image.shape[1]  # the legend beside it
        fractions = np.bincount(mask.ravel(), minlength=21) / mask.size
        assert {CLASS_NAMES[c]: round(float(f), 5) for c, f in enumerate(fractions) if f} == item["classes"]
    # a glob of the good ones only (given twice: each image once), masks only: status 0
    pattern = str(photos / "synth_*.jpg")
    good = predict_main(
        [
            pattern,
            pattern,
            "--weights",
            str(deeplab_file),
            "--out",
            str(tmp_path / "glob"),
            "--no-progress",
            "--no-overlay",
        ]
    )
    assert good == 0 and sorted(p.name for p in (tmp_path / "glob").iterdir()) == sorted(
        [*(p.name.replace(".jpg", ".png") for p in photos.glob("synth_*.jpg")), "predictions.json"]
    )
    with pytest.raises(ProjectError, match="model file not found"):  # the command prints it, status 1 (test_cli)
        predict_main([str(photos / "missing.jpg"), "--weights", str(tmp_path / "none.pt"), "--no-progress"])


def test_a_model_file_fine_tunes_to_another_class_set(deeplab_file, tmp_path, caplog):
    """A converted checkpoint (21 classes) into a 5-class folder dataset: the file's network and every weight but the
    classifier, which is re-initialised, in one log line."""
    folder = write_folder_dataset(tmp_path / "mine", n_train=4, n_val=2)
    with caplog.at_level(logging.INFO):
        run = TrainingRun(folder_train(folder, f"weights={deeplab_file}"), tmp_path / "run")
    (line,) = [r.getMessage() for r in caplog.records if "re-initialised" in r.getMessage()]
    assert "21 classes -> 5: every weight but the classifier (head.classifier)" in line
    model = run.model
    assert model.geometry == "deeplab" and model.head.classifier.out_channels == 5
    file_state = torch.load(deeplab_file, weights_only=True)["state_dict"]
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in file_state.items() if not k.startswith("head.classifier."))
