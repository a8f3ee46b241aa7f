"""The export app: a trained run folder -> ONNX + export.json with ONNX Runtime parity; a configuration's network
with random weights; the network a run ended at (its final stage's stride)."""

import json

import pytest

from deeplab_mobile.apps.export import export
from deeplab_mobile.apps.train import train
from tests.helpers import composed, tiny

pytestmark = pytest.mark.slow  # ONNX export and ONNX Runtime parity end to end


def test_export_from_a_run_folder(tmp_path, synthetic_voc):
    """A trained run's checkpoint -> <run>/export/model.onnx + export.json with parity numbers."""
    run = tmp_path / "run"
    train(tiny(synthetic_voc, "trainer.iters=2", "eval.mf=false"), run)
    cfg = composed("export", [f"run_dir={run}", "size=[65,65]", "dynamic=true", "parity.sizes=[[65,65],[81,97]]"])
    info = export(cfg, run / "export")
    assert (run / "export" / "model.onnx").is_file()
    saved = json.loads((run / "export" / "export.json").read_text())
    assert saved["iteration"] == 2 and saved["width"] == 0.35 and len(saved["parity"]) == 2
    assert all(p["max_abs_diff"] <= 1e-4 and p["argmax_agreement"] >= 0.999 for p in info["parity"])


def test_export_of_a_configuration_and_of_a_run_that_ended_at_os8(tmp_path, synthetic_voc):
    info = export(composed("export", ["head=no_aspp", "width=0.35", "size=[65,65]"]), tmp_path / "config")
    assert (info["network"], info["os"], info["weights"]) == ("MNet V2* x0.35", 16, "random")
    assert info["parity"][0]["max_abs_diff"] <= 1e-4
    run = tmp_path / "run"
    train(tiny(synthetic_voc, "trainer.iters=2", "trainer.final_stage={os:8,iters:1}", "eval.mf=false"), run)
    info = export(composed("export", [f"run_dir={run}", "size=[65,65]"]), run / "export")
    assert info["os"] == 8 and info["parity"][0]["argmax_agreement"] >= 0.999


def test_executorch_program_of_a_configuration(tmp_path):
    """format=pte: an XNNPACK program (DeepLab's geometry: the matmul resize with align_corners=True) within 1e-4 of
    PyTorch, its export.json, the folder rule (<export>/executorch), and the one-line refusals."""
    from deeplab_mobile.config.paths import export_dir

    cfg = composed("export", ["head=no_aspp", "width=0.35", "size=[65,81]", "format=pte", "geometry=deeplab"])
    info = export(cfg, tmp_path)
    assert (tmp_path / "model.pte").is_file() and info["delegate"] == "XNNPACK" and info["resize"] == "matmul"
    assert info["parity"][0]["size"] == [65, 81] and info["parity"][0]["max_abs_diff"] <= 1e-4
    assert json.loads((tmp_path / "export.json").read_text())["input"]["shape"] == [1, 3, 65, 81]
    assert export_dir("outputs/train/r", None, "now", "pte") == "outputs/train/r/export/executorch"
    assert export_dir("outputs/train/r", None, "now", "onnx") == "outputs/train/r/export"
    with pytest.raises(ValueError, match="static size"):
        export(composed("export", ["width=0.35", "format=pte", "dynamic=true"]), tmp_path / "d")
    with pytest.raises(ValueError, match="format='coreml'"):
        export(composed("export", ["width=0.35", "format=coreml"]), tmp_path / "t")
    assert not (tmp_path / "d").exists() and not (tmp_path / "t").exists()
