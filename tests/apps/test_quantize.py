"""The quantize app on a small trained run: model.int8.onnx and quant.json, float and INT8 scored by the evaluator
(the float ONNX model scores as the PyTorch model does), and bad inputs refused before any file is written."""

import json

import numpy as np
import pytest

from deeplab_mobile.apps.evaluate import evaluate_run
from deeplab_mobile.apps.quantize import quantize
from deeplab_mobile.apps.train import train
from deeplab_mobile.data import DatasetError
from deeplab_mobile.deploy.quantize import QuantizationError
from deeplab_mobile.engine.run import SettingError
from deeplab_mobile.predict import Segmenter
from tests.helpers import composed, tiny

pytestmark = pytest.mark.slow  # ONNX export, INT8 calibration and QAT end to end


@pytest.fixture(scope="module")
def run(tmp_path_factory, synthetic_voc):
    out = tmp_path_factory.mktemp("run")
    train(tiny(synthetic_voc, "eval.mf=false", "eval.os=16", "trainer.iters=20", "trainer.eval_every=100"), out)
    return out


def test_a_run_whose_data_is_elsewhere_is_named_before_calibration(run, synthetic_voc, tmp_path, monkeypatch):
    """Not "no calibration images": the dataset path tried, the run's config it came from, and data_root=."""
    from tests.apps.test_train import moved_run

    copy = moved_run(run, synthetic_voc, tmp_path)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(
        DatasetError, match=r"^data/VOCdevkit/VOC2012: dataset root not found \(data.root in .*data_root="
    ):
        quantize(settings(f"run_dir={copy}", f"out_dir={tmp_path / 'q'}"))
    assert not (tmp_path / "q" / "model.int8.onnx").exists()


def settings(*extra):
    return composed(
        "quantize", ["calibration.images=6", "latency.threads=[1]", "latency.repeats=2", "progress=false", *extra]
    )


def test_post_training_int8_of_a_run(run, synthetic_voc):
    record = quantize(settings(f"run_dir={run}", "eval.mf=true", "eval.mf_scales=[0.75,1.0]"))
    saved = json.loads((run / "quant" / "quant.json").read_text())
    assert saved["miou"] == record["miou"] and (run / "quant" / "model.int8.onnx").is_file()
    assert saved["bytes"]["int8"] < 0.5 * saved["bytes"]["float"]
    assert saved["argmax_agreement"] > 0.9
    low, high = saved["miou_drop_ci95"]["int8"]["ss"]  # a paired interval over the val images, around the drop
    assert low <= saved["miou_drop"]["ss"] <= high and set(saved["miou_drop_ci95"]) == {"int8"}
    assert set(saved["miou"]["int8"]) == {"ss", "mf"} and saved["calibration"]["split"] == "train"
    assert set(saved["latency_ms"]["int8"]) == {"1"} and saved["eval"]["pad_to"] == 65
    # the float ONNX model (feature-resolution logits) is scored by the same evaluator, with the same staged MF
    # resizes, as the PyTorch model: the same mIoU (fp32 ONNX Runtime against PyTorch differs by ~1e-6 in the
    # logits, which moves at most a handful of near-tied pixels)
    torch_eval = evaluate_run(
        composed(
            "eval",
            [
                f"run_dir={run}",
                "eval.mf=true",
                "eval.mf_scales=[0.75,1.0]",
                "eval.workers=0",
                "eval.os=16",
                "progress=false",
            ],
        )
    )
    assert saved["miou"]["float"]["ss"] == pytest.approx(torch_eval["ss"]["miou"], abs=1e-3)
    assert saved["miou"]["float"]["mf"] == pytest.approx(torch_eval["mf"]["miou"], abs=1e-3)
    assert abs(saved["miou_drop"]["ss"]) < 0.05
    # the INT8 file segments images like any export (export.json beside it)
    segmenter = Segmenter.from_pretrained(run / "quant" / "model.int8.onnx")
    image = next((synthetic_voc / "JPEGImages").iterdir())
    from deeplab_mobile.data.base import read_image

    assert segmenter.predict(read_image(image), pad_to=65, max_size=None).shape == read_image(image).shape[:2]


def test_qat_and_executorch_programs_are_scored_by_the_same_evaluator(run, synthetic_voc, tmp_path):
    """PT2E QAT for three steps (BatchNorm frozen after the first, the ranges after the second, a decaying LR) with
    executorch=true: a QDQ ONNX file, the first conv and the classifier left in float as PTQ leaves them; float,
    INT8 and QAT XNNPACK programs beside the ONNX files. All scored by the same evaluator: the float program as the
    float ONNX model (both are the PyTorch model to ~1e-6), the INT8 ones segment like it."""
    record = quantize(
        settings(
            f"run_dir={run}",
            f"out_dir={tmp_path}",
            "qat.steps=3",
            "qat.batch_size=2",
            "qat.freeze_bn_after=1",
            "qat.freeze_observers_after=2",
            "qat.schedule=poly",
            "executorch=true",
        )
    )
    qat = tmp_path / "model.qat.int8.onnx"
    assert qat.is_file() and record["files"]["qat"] == str(qat)
    # every other conv reads int8 weights (through DequantizeLinear); the file is about 0.6 of the float one and
    # its size varies by a few 10 kB between exports, so the size bound has room
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(qat)).graph
    ops = {n.op_type for n in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops and "BatchNormalization" not in ops
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    by_output = {o: n for n in graph.node for o in n.output}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    kernels = [by_output.get(n.input[1]) for n in convs]
    quantized = [k for k in kernels if k is not None and k.op_type == "DequantizeLinear"]
    assert all(inits[k.input[0]].dtype == np.int8 for k in quantized) and len(quantized) == len(convs) - 2
    kept = [n for n, k in zip(convs, kernels, strict=True) if k not in quantized]
    assert kept[0].input[0] == graph.input[0].name  # the first conv reads the image
    assert graph.output[0].name in kept[1].output  # the classifier writes the logits
    # activations in uint8 and each ReLU6 quantized with its conv: ONNX Runtime runs every quantized conv as an
    # integer conv (with int8 activations or a clip between two quantizations it ran many in float)
    assert all(inits[n.input[2]].dtype == np.uint8 for n in graph.node if n.op_type == "QuantizeLinear")
    assert all(by_output[n.input[0]].op_type == "Conv" for n in graph.node if n.op_type == "Clip")
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "qat.optimized.onnx")
    ort.InferenceSession(str(qat), options, providers=["CPUExecutionProvider"])
    optimized = [n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node]
    assert optimized.count("QLinearConv") == len(convs) - 2
    assert record["bytes"]["qat"] < 0.75 * record["bytes"]["float"]
    assert set(record["miou"]["qat"]) == {"ss"} and record["qat"]["steps"] == 3
    assert record["qat"]["freeze_bn_after"] == 1 and record["qat"]["schedule"] == "poly"
    assert record["qat"]["argmax_agreement"] > 0.8 and record["qat"]["crop_size"] == 65
    assert set(record["miou_drop_ci95"]) == {"int8", "int8_pte", "qat", "qat_pte"}
    drops = {"qat": record["qat"]["miou_drop"]["ss"], "int8_pte": record["executorch"]["miou_drop"]["ss"]}
    for name, drop in drops.items():
        low, high = record["miou_drop_ci95"][name]["ss"]
        assert low <= drop <= high
    saved = json.loads((tmp_path / "quant.json").read_text())
    assert saved["qat"]["loss_last"] == record["qat"]["loss_last"]

    for name in ("model.pte", "model.int8.pte", "model.qat.int8.pte"):
        assert (tmp_path / name).is_file()
    et = record["executorch"]
    assert et["float_max_abs_diff"] <= 1e-4 and et["delegate"] == "XNNPACK"
    assert record["miou"]["float_pte"]["ss"] == pytest.approx(record["miou"]["float"]["ss"], abs=1e-3)
    assert et["argmax_agreement"]["int8_pte"] > 0.9 and et["keep_float"] == ["first", "logits"]
    assert et["argmax_agreement"]["qat_pte"] > 0.8
    assert et["miou_drop"]["ss"] == pytest.approx(record["miou"]["float_pte"]["ss"] - record["miou"]["int8_pte"]["ss"])
    assert record["bytes"]["int8_pte"] < 0.5 * record["bytes"]["float_pte"]
    assert set(record["latency_ms"]) == {"float", "int8", "float_pte", "int8_pte", "qat", "qat_pte"}
    # an INT8 program segments images through Segmenter (export.json beside it), free sizes included
    from deeplab_mobile.data.base import read_image

    image = read_image(next((synthetic_voc / "JPEGImages").iterdir()))
    segmenter = Segmenter.from_pretrained(tmp_path / "model.int8.pte", threads=1)
    assert segmenter.predict(image, pad_to=65, max_size=None).shape == image.shape[:2]
    assert segmenter.predict(image, pad_to=97, max_size=None, scales=(0.75, 1.0), flip=True).shape == image.shape[:2]


def test_litert_and_openvino_files_are_scored_beside_onnx_runtime(run, synthetic_voc, tmp_path):
    """litert=true openvino=true: LiteRT float and INT8 (the ExecuTorch path's PT2E INT8), OpenVINO IR of both ONNX
    files (f32, bf16 as its own row), all scored by the same evaluator. Each float file's mIoU within 0.05 pt of
    the PyTorch model's (single scale, the run's crop), each INT8 drop with its paired interval."""
    from PIL import Image

    with pytest.raises(QuantizationError, match=r"has images up to (\d+) pixels a side: give eval.pad_to=\1 or more"):
        quantize(settings(f"run_dir={run}", f"out_dir={tmp_path}", "litert=true"))
    assert not any(tmp_path.iterdir())
    side = max(max(Image.open(p).size) for p in (synthetic_voc / "JPEGImages").iterdir())  # every image fits
    record = quantize(
        settings(f"run_dir={run}", f"out_dir={tmp_path}", "litert=true", "openvino=true", f"eval.pad_to={side}")
    )
    torch_eval = evaluate_run(
        composed(
            "eval",
            [
                f"run_dir={run}",
                "eval.mf=false",
                "eval.workers=0",
                "eval.os=16",
                "progress=false",
                f"eval.pad_to={side}",
            ],
        )
    )
    for name in ("float", "float_tflite", "float_openvino"):
        assert abs(record["miou"][name]["ss"] - torch_eval["ss"]["miou"]) <= 0.0005, name
    assert record["litert"]["float_max_abs_diff"] <= 1e-4 and record["openvino"]["float_max_abs_diff"] <= 1e-4
    assert set(record["miou_drop_ci95"]) == {"int8", "int8_tflite", "int8_openvino", "float_openvino_bf16"}
    for runtime in ("litert", "openvino"):
        drop = record[runtime]["miou_drop"]["ss"]
        low, high = record["miou_drop_ci95"]["int8_" + ("tflite" if runtime == "litert" else "openvino")]["ss"]
        assert low <= drop <= high and abs(drop) < 0.1
    assert record["litert"]["argmax_agreement"]["int8_tflite"] > 0.9
    ran = record["litert"]["delegation"]["int8_tflite"]
    assert ran["xnnpack_delegated"] == ran["ops_total"]
    assert record["bytes"]["int8_tflite"] < 0.5 * record["bytes"]["float_tflite"]
    executed = record["openvino"]["executed"]
    assert set(executed["float_openvino"]["Convolution"]) == {"f32"}
    assert "u8" in executed["int8_openvino"]["Convolution"]
    assert record["openvino"]["bf16_max_abs_diff"] is not None
    assert (tmp_path / "openvino" / "model.int8.xml").is_file() and (tmp_path / "openvino" / "export.json").is_file()
    assert set(record["latency_ms"]["float_openvino_bf16"]) == {"1"}
    # the INT8 LiteRT model segments an image through Segmenter, as every export does
    from deeplab_mobile.data.base import read_image

    image = read_image(next((synthetic_voc / "JPEGImages").iterdir()))
    segmenter = Segmenter.from_pretrained(tmp_path / "model.int8.tflite", threads=1)
    assert segmenter.predict(image, pad_to=side, max_size=None).shape == image.shape[:2]
    # predict pads to a static square export's own size when --pad-to is not given
    from deeplab_mobile.apps.predict import main as predict

    photo = next((synthetic_voc / "JPEGImages").iterdir())
    assert predict(["--weights", str(tmp_path / "model.int8.tflite"), str(photo), "--out", str(tmp_path / "p")]) == 0
    assert json.loads((tmp_path / "p" / "predictions.json").read_text())["pad_to"] == side


def test_bad_settings_are_refused_before_any_file(run, tmp_path):
    with pytest.raises(QuantizationError, match="method='kl'"):
        quantize(settings(f"run_dir={run}", "method=kl", f"out_dir={tmp_path / 'a'}"))
    with pytest.raises(SettingError, match="give one of"):
        quantize(settings(f"out_dir={tmp_path / 'b'}"))
    with pytest.raises(QuantizationError, match="QAT needs run_dir= or weights="):
        quantize(settings(f"onnx={tmp_path / 'm.onnx'}", "qat.steps=5", f"out_dir={tmp_path / 'd'}"))
    with pytest.raises(QuantizationError, match="executorch=true needs the PyTorch model"):
        quantize(settings(f"onnx={tmp_path / 'm.onnx'}", "executorch=true", f"out_dir={tmp_path / 'e'}"))
    with pytest.raises(QuantizationError, match="litert=true needs the PyTorch model"):
        quantize(settings(f"onnx={tmp_path / 'm.onnx'}", "litert=true", f"out_dir={tmp_path / 'e'}"))
    with pytest.raises(QuantizationError, match="LiteRT models have one input size"):
        quantize(settings(f"run_dir={run}", "litert=true", "eval.mf=true", f"out_dir={tmp_path / 'e'}"))
    with pytest.raises(QuantizationError, match="qat.schedule='cosine'"):
        quantize(settings(f"run_dir={run}", "qat.schedule=cosine", f"out_dir={tmp_path / 'f'}"))
    with pytest.raises(QuantizationError, match="qat.freeze_bn_after must be a number of steps"):
        quantize(settings(f"run_dir={run}", "qat.freeze_bn_after=-1", f"out_dir={tmp_path / 'g'}"))
    with pytest.raises(QuantizationError, match="weight_type='int4'"):
        quantize(settings(f"run_dir={run}", "weight_type=int4", f"out_dir={tmp_path / 'h'}"))
    with pytest.raises(QuantizationError, match="calibration.images must be at least 1"):
        quantize(settings(f"run_dir={run}", "calibration.images=0", f"out_dir={tmp_path / 'c'}"))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    assert not (tmp_path / "c").exists()
