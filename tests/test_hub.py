"""Sharing a trained model as a Hugging Face Hub folder (huggingface_hub's mixin): a run and a model file written
by ``export format=hub`` / ``hub.save_pretrained`` and read back by ``Segmenter.from_pretrained`` give the same
logits to the bit; the card says what the run scored; a folder of another library, a folder already used, an
unknown Hub id offline and a network a folder cannot rebuild are refused in one line."""

import json
import os
import subprocess
import sys

import pytest
import torch

from deeplab_mobile import hub
from deeplab_mobile.apps.train import train
from deeplab_mobile.config.source import open_run
from deeplab_mobile.models import build_model
from deeplab_mobile.predict import Segmenter
from tests.helpers import ROOT, tiny

pytestmark = pytest.mark.slow  # a small training, the export command in a fresh process


@pytest.fixture(scope="module")
def run(tmp_path_factory, synthetic_voc):
    out = tmp_path_factory.mktemp("hub_run")
    train(tiny(synthetic_voc, "eval.mf=false", "trainer.eval_every=100"), out)
    return out


def logits(model, seed=0):
    x = torch.randn(2, 3, 65, 81, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return model.eval()(x)


def test_a_run_exported_as_a_hub_folder_loads_back_to_the_same_logits(run, tmp_path):
    folder = tmp_path / "shared"
    done = subprocess.run(
        [sys.executable, "-m", "deeplab_mobile", "export", f"run_dir={run}", "format=hub", f"out_dir={folder}"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert {p.name for p in folder.iterdir()} >= {"config.json", "model.safetensors", "README.md"}
    assert not (folder / ".hydra").exists()
    source = open_run(run)
    segmenter = Segmenter.from_pretrained(folder)
    assert torch.equal(logits(segmenter.model), logits(source.model))
    assert segmenter.classes == source.classes and segmenter.mean == tuple(source.model.encoder.mean)
    metrics = json.loads((run / "metrics.json").read_text())
    card = (folder / "README.md").read_text()
    assert "library_name: deeplab-mobile" in card and f"{metrics['ss']['miou']:.4f}" in card
    low, high = metrics["ss"]["miou_ci95"]
    assert f"[{low:.4f}, {high:.4f}]" in card and '"iterations": 6' in card
    config = json.loads((folder / "config.json").read_text())
    assert config["format"] == "deeplab-mobile" and config["network"]["width"] == 0.35
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    with pytest.raises(hub.HubError, match="already holds config.json"):
        hub.save_pretrained(source.model, folder, list(source.classes))
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} == before


def test_a_model_file_round_trips_and_another_library_s_folder_is_named(tmp_path):
    torch.manual_seed(0)
    model = build_model("mobilenet_v2", head="no_aspp", width=0.35, bn="deeplab", geometry="deeplab")
    hub.save_pretrained(model.eval(), tmp_path / "mine", [str(i) for i in range(21)], {"title": "a test"})
    back = hub.load_pretrained(tmp_path / "mine").model
    assert torch.equal(logits(back), logits(model))

    from transformers import MobileNetV2Config, MobileNetV2ForSemanticSegmentation

    MobileNetV2ForSemanticSegmentation(MobileNetV2Config(num_labels=21)).save_pretrained(tmp_path / "theirs")
    with pytest.raises(hub.HubError, match=r"another library \(model_type mobilenet_v2.*convert-weights"):
        Segmenter.from_pretrained(tmp_path / "theirs")


def test_a_hub_id_offline_and_an_unnameable_network_are_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(hub.HubError, match="the Hub id could not be fetched"):
        Segmenter.from_pretrained("someone/not-here")
    from functools import partial

    from deeplab_mobile.models.heads import DeepLabHead

    model = build_model("mobilenet_v2", head=partial(DeepLabHead, aspp=False, channels=64), width=0.35)
    with pytest.raises(hub.HubError, match="cannot rebuild it"):
        hub.save_pretrained(model, tmp_path / "narrow", [str(i) for i in range(21)])
    assert not (tmp_path / "narrow").exists()
