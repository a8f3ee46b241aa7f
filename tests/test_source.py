"""The one model-source resolver: what each kind of path resolves to, checked against what was written (the
checkpoint's weights, the file's classes, the export's description), and the refusals."""

import shutil

import pytest
import torch

from deeplab_mobile.apps.evaluate import evaluate_run
from deeplab_mobile.apps.export import export
from deeplab_mobile.apps.train import train
from deeplab_mobile.config.source import from_config, load_segmenter, resolve
from deeplab_mobile.engine.checkpoint import load_checkpoint, model_state
from deeplab_mobile.engine.run import SettingError
from deeplab_mobile.errors import InvalidValue, ProjectError
from deeplab_mobile.models import build_model
from deeplab_mobile.models.pretrained import ModelFile, save_model_file
from tests.helpers import composed, tiny

pytestmark = pytest.mark.slow  # a short training, an evaluation and an ONNX export


@pytest.fixture(scope="module")
def run(tmp_path_factory, synthetic_voc):
    out = tmp_path_factory.mktemp("run")
    train(tiny(synthetic_voc, "eval.mf=false", "trainer.iters=4", "trainer.eval_every=100"), out)
    return out


def same_weights(model, state):
    own = model.state_dict()
    return own.keys() == state.keys() and all(torch.equal(own[k], state[k]) for k in own)


def test_a_run_folder_its_checkpoint_and_its_record(run, tmp_path):
    last = run / "checkpoints" / "last.pt"
    state = model_state(load_checkpoint(last), last)
    source = resolve(run)
    assert source.kind == "run" and source.pytorch and source.checkpoint == last and source.iteration == 4
    assert same_weights(source.model, state) and source.pad_to == 65 and len(source.classes) == 21
    assert source.origin == {"run_dir": str(run), "checkpoint": str(last), "iteration": 4}
    # a copy of the checkpoint inside the run: that file, the run's network
    other = run / "checkpoints" / "copy.pt"
    shutil.copy(last, other)
    assert resolve(other).checkpoint == other and same_weights(resolve(other).model, state)
    # an evaluation record: the run and checkpoint it scored
    scored = evaluate_run(composed("eval", [f"run_dir={run}", "eval.mf=false", "eval.workers=0", "progress=false"]))
    from_record = resolve(scored["record"])
    assert from_record.kind == "run" and from_record.checkpoint == last and same_weights(from_record.model, state)
    assert resolve(run, output_stride=8).model.output_stride == 8
    segmenter = load_segmenter(run)
    assert segmenter.classes == source.classes and segmenter.mean == source.mean


def test_a_model_file_and_its_export(tmp_path):
    torch.manual_seed(0)
    model = build_model("mobilenet_v2", "no_aspp", 16, 0.35, num_classes=3)
    config = {"encoder": "mobilenet_v2", "head": "no_aspp", "output_stride": 16, "width": 0.35, "tap": None}
    info = ModelFile(
        {**config, "num_classes": 3, "bn": "torch", "geometry": "torch"},
        (0.5,) * 3,
        (0.25,) * 3,
        ("a", "b", "c"),
        source="test",
    )
    path = save_model_file(tmp_path / "m.pt", model, info)
    source = resolve(path)
    assert source.kind == "model_file" and source.classes == ("a", "b", "c") and source.mean == (0.5,) * 3
    assert source.origin == {"weights": str(path), "source": "test"} and source.file.source == "test"
    assert same_weights(source.model, model.state_dict())
    assert resolve(path, output_stride=8).output_stride == 8
    cfg = composed("export", [f"weights={path}", "size=[65,65]", "parity.sizes=[[65,65]]", "os=16"])
    export(cfg, tmp_path / "export")
    onnx = resolve(tmp_path / "export" / "model.onnx")
    assert onnx.kind == "onnx" and not onnx.pytorch and onnx.classes == ("a", "b", "c")
    assert onnx.export.static == (65, 65) and onnx.pad_to == 65 and onnx.std == (0.25,) * 3
    assert onnx.origin == {"onnx": str(tmp_path / "export" / "model.onnx")}
    assert onnx.export.extra["weights"] == str(path)  # export.json records where its model came from
    with pytest.raises(InvalidValue, match="exported at output stride 16"):
        resolve(tmp_path / "export" / "model.onnx", output_stride=8)


def test_refusals_name_the_path_or_the_keys(tmp_path):
    with pytest.raises(InvalidValue, match="not a training run"):
        resolve(tmp_path)
    with pytest.raises(ProjectError, match="model file not found"):
        resolve(tmp_path / "none.pt")
    with pytest.raises(ProjectError, match="ONNX file not found"):
        resolve(tmp_path / "none.onnx")
    cfg = composed("quantize", [f"run_dir={tmp_path}", f"weights={tmp_path / 'm.pt'}"])
    with pytest.raises(SettingError, match="give one of run_dir= or weights= or onnx= \\(got run_dir, weights\\)"):
        from_config(cfg)
