"""Fine-tuning to another class set: a 21-class run (or a converted model file) into a 5-class folder dataset keeps
every weight but the classifier, re-initialises it and says so in one line; anything else that does not fit is
still an error."""

import json
import logging
from unittest import mock

import pytest
import torch

from deeplab_mobile.apps.evaluate import evaluate_run
from deeplab_mobile.apps.train import TrainingRun, train
from deeplab_mobile.config.source import open_run
from deeplab_mobile.engine.checkpoint import last_checkpoint, load_checkpoint, model_state
from deeplab_mobile.engine.run import SettingError
from deeplab_mobile.models import build_model
from deeplab_mobile.models.pretrained import load_weights
from deeplab_mobile.models.weights import WeightsError
from tests.helpers import FOLDER_CLASSES, composed, folder_train, tiny, write_folder_dataset

pytestmark = pytest.mark.slow  # trainings end to end


@pytest.fixture(scope="module")
def voc_run(synthetic_voc, tmp_path_factory):
    """A 21-class run on the generated data (MobileNetV2 x0.35, no ASPP)."""
    out = tmp_path_factory.mktemp("voc_run")
    train(tiny(synthetic_voc, "trainer.iters=2", "eval.mf=false"), out)
    return out


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_folder_dataset(tmp_path_factory.mktemp("folder") / "mine")


def test_fine_tune_a_21_class_run_to_a_5_class_folder(voc_run, folder, tmp_path, caplog):
    source = model_state(load_checkpoint(last_checkpoint(voc_run)), last_checkpoint(voc_run))
    with caplog.at_level(logging.INFO):
        run = TrainingRun(folder_train(folder, f"weights={voc_run}"), tmp_path)
    lines = [r.getMessage() for r in caplog.records if "re-initialised" in r.getMessage()]
    assert len(lines) == 1 and "21 classes -> 5: every weight but the classifier (head.classifier)" in lines[0]
    state = run.model.state_dict()
    assert state["head.classifier.weight"].shape == (5, 256, 1, 1)
    kept = [k for k in source if not k.startswith("head.classifier.")]
    assert kept and all(torch.equal(state[k], source[k]) for k in kept)
    assert not torch.equal(state["head.classifier.bias"][:5], source["head.classifier.bias"][:5])
    run.run()
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["num_classes"] == 5 and list(metrics["ss"]["iou"]) == list(FOLDER_CLASSES)
    # the run folder holds the class set and the network: it loads and evaluates without the source run
    loaded = open_run(tmp_path)
    assert loaded.run.num_classes == 5 and list(loaded.run.data.classes) == list(FOLDER_CLASSES)
    scored = evaluate_run(
        composed("eval", [f"run_dir={tmp_path}", "eval.mf=false", "eval.workers=0", "progress=false"])
    )
    assert scored["ss"]["miou"] == pytest.approx(metrics["ss"]["miou"])


def test_fine_tune_from_a_checkpoint_path_and_the_class_count_follows_the_data(voc_run, folder, tmp_path):
    run = TrainingRun(folder_train(folder, f"weights={last_checkpoint(voc_run)}"), tmp_path)
    assert run.model.head.num_classes == 5 and run.cfg.num_classes == 5


def test_same_class_count_loads_every_weight(voc_run, synthetic_voc, tmp_path, caplog):
    source = model_state(load_checkpoint(last_checkpoint(voc_run)), last_checkpoint(voc_run))
    with caplog.at_level(logging.INFO):
        run = TrainingRun(tiny(synthetic_voc, f"weights={voc_run}"), tmp_path)
    assert not any("re-initialised" in r.getMessage() for r in caplog.records)
    assert all(torch.equal(v, source[k]) for k, v in run.model.state_dict().items())


def test_what_else_does_not_fit_is_an_error(voc_run):
    source = model_state(load_checkpoint(last_checkpoint(voc_run)), last_checkpoint(voc_run))
    wider = build_model("mobilenet_v2", "no_aspp", 16, width=0.5, num_classes=5)
    with pytest.raises(WeightsError, match="do not fit the network"):
        load_weights(wider, source, "run", other_classes=True)
    aspp = build_model("mobilenet_v2", "aspp", 16, width=0.35, num_classes=5)
    with pytest.raises(WeightsError, match="(?s)do not fit the network.*head.project"):
        load_weights(aspp, source, "run", other_classes=True)
    same = build_model("mobilenet_v2", "no_aspp", 16, width=0.35, num_classes=5)
    with pytest.raises(WeightsError, match="do not fit"):  # another class count, not asked for
        load_weights(same, source, "run")


def test_num_classes_against_the_classes_file(folder, tmp_path):
    run = TrainingRun(folder_train(folder), tmp_path)
    assert run.cfg.num_classes == 5 and run.names == FOLDER_CLASSES
    # num_classes given on the command line (Hydra's task overrides) and differing from the file is refused
    with mock.patch("deeplab_mobile.config.model.command_line_keys", return_value={"num_classes"}):
        with pytest.raises(SettingError, match="num_classes=7, but .*classes.txt names 5 classes"):
            TrainingRun(folder_train(folder, "num_classes=7"), tmp_path / "seven")
