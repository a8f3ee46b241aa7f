"""LiteRT and OpenVINO beside ONNX Runtime and ExecuTorch: each float export's logits against the PyTorch model's,
OpenVINO's bf16 as its own labelled rows, an INT8 ONNX file as OpenVINO INT8, the XNNPACK delegation count, and the
one-line refusals (an op a runtime cannot take, a static file fed another size, a missing extra, one runtime's
file named as another's), none of which writes a file."""

import json
import sys

import numpy as np
import pytest
import torch

from deeplab_mobile.apps.export import export
from deeplab_mobile.config.paths import export_dir
from deeplab_mobile.config.source import resolve
from deeplab_mobile.deploy import randomize_batchnorm
from deeplab_mobile.deploy.litert import TfliteSegmentor, convert_tflite, delegation
from deeplab_mobile.deploy.open import check_content, sniff
from deeplab_mobile.extras import MissingExtra
from deeplab_mobile.models import build_model
from tests.helpers import composed

SIZE = (65, 81)


def tiny_model(geometry: str = "torch", head: str = "no_aspp") -> torch.nn.Module:
    """MobileNetV2 x0.35 with non-trivial BatchNorm and classifier (a fresh one outputs near-zero logits, under
    which a wrong graph would still agree)."""
    torch.manual_seed(0)
    model = build_model("mobilenet_v2", head, 16, width=0.35, num_classes=21, geometry=geometry).eval()
    randomize_batchnorm(model, torch.Generator().manual_seed(0))
    for p in model.head.parameters():
        torch.nn.init.normal_(p, std=0.1)
    return model


def test_sniff_tells_each_format_by_its_first_bytes():
    """The magic bytes, written by hand from each format's definition (not read back from our own files)."""
    assert sniff(b"\x1c\x00\x00\x00TFL3\x00\x00") == ".tflite"  # FlatBuffer, file identifier TFL3
    assert sniff(b"<\x00\x00\x00ET12\x00\x00") == ".pte"  # FlatBuffer, file identifier ET12
    assert sniff(b'<?xml version="1.0"?>\n<net name=') == ".xml"
    assert sniff(b"\x08\x0a\x12\x07pytorch") == ".onnx"  # ModelProto: field 1 (ir_version), varint
    assert sniff(b"PK\x03\x04") is None  # a zip (a .pt file) is none of them


def test_a_file_of_one_runtime_named_as_another_is_refused_in_one_line(tmp_path):
    onnx_bytes = b"\x08\x0a\x12\x07pytorch" + bytes(100)
    fake = tmp_path / "model.tflite"
    fake.write_bytes(onnx_bytes)
    (tmp_path / "export.json").write_text("{}")
    with pytest.raises(ValueError, match=r"model.tflite: the file is a ONNX file \(.onnx\), not a LiteRT model") as e:
        resolve(fake)
    assert "\n" not in str(e.value)
    check_content(tmp_path / "export.json")  # not an export suffix's content check: nothing to say
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export.json", "model.tflite"]


def test_a_missing_extra_is_named_with_the_extra_that_installs_it(monkeypatch, tmp_path):
    for name in ("litert_torch", "ai_edge_litert", "openvino"):
        monkeypatch.setitem(sys.modules, name, None)  # as if not installed: importing it fails
    with pytest.raises(MissingExtra, match=r"^LiteRT export needs litert-torch, .*deeplab-mobile\[litert\]'$"):
        convert_tflite(torch.nn.Identity(), tmp_path / "m.tflite", (9, 9))
    with pytest.raises(MissingExtra, match=r"^Running a LiteRT model needs ai-edge-litert, .*\[litert\]'$"):
        TfliteSegmentor(tmp_path / "m.tflite")
    with pytest.raises(MissingExtra, match=r"^OpenVINO export needs openvino, .*deeplab-mobile\[openvino\]'$"):
        export(composed("export", ["width=0.35", "size=[65,65]", "format=openvino"]), tmp_path / "ov")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_export_refusals_write_nothing(tmp_path):
    with pytest.raises(ValueError, match="format=tflite: a LiteRT model has a static size"):
        export(composed("export", ["width=0.35", "format=tflite", "dynamic=true"]), tmp_path / "a")
    with pytest.raises(ValueError, match="onnx= is converted to OpenVINO IR"):
        export(composed("export", ["format=onnx", f"onnx={tmp_path / 'm.onnx'}"]), tmp_path / "b")
    with pytest.raises(ValueError, match="format='coreml'"):
        export(composed("export", ["width=0.35", "format=coreml"]), tmp_path / "c")
    assert not any(tmp_path.iterdir())
    assert export_dir("outputs/train/r", None, "now", "tflite") == "outputs/train/r/export/litert"
    assert export_dir(None, None, "now", "openvino", None, "q/model.int8.onnx") == "q/openvino"


@pytest.mark.slow
def test_an_op_litert_cannot_take_is_named_with_the_format(tmp_path):
    class Spectrum(torch.nn.Module):
        def forward(self, x):
            return torch.fft.rfft2(x).abs()

    with pytest.raises(ValueError, match=r"^LiteRT \(.tflite\) cannot take the op aten._fft_r2c") as e:
        convert_tflite(Spectrum().eval(), tmp_path / "m.tflite", (9, 9))
    assert "\n" not in str(e.value) and not any(tmp_path.iterdir())


@pytest.mark.slow
@pytest.mark.parametrize("geometry", ["torch", "deeplab"])
def test_litert_float_model_matches_pytorch(tmp_path, geometry):
    """The XNNPACK-delegated model within 1e-4 of PyTorch's logits (DeepLab's geometry too: its align_corners=True
    resizes), every op delegated, and a static file fed another size refused in one line."""
    from deeplab_mobile.deploy.litert import export_tflite

    model = tiny_model(geometry, head="aspp")
    path = export_tflite(model, tmp_path / "model.tflite", SIZE)
    runner = TfliteSegmentor(path, geometry)
    ran = runner.delegation()
    assert ran["xnnpack_delegated"] == ran["ops_total"] > 50 and ran["ops"]["DEPTHWISE_CONV_2D"] == 17
    for seed in range(2):
        x = torch.randn(1, 3, *SIZE, generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            expected = model(x)
        got = runner(x)
        assert (got - expected).abs().max() <= 1e-4 and (got.argmax(1) == expected.argmax(1)).float().mean() > 0.999
    with pytest.raises(ValueError, match=r"exported for 65x81 inputs only, got 81x65 \(export it at that size\)"):
        runner(torch.randn(1, 3, 81, 65))


@pytest.mark.slow
def test_export_app_writes_a_litert_model_with_its_description(tmp_path):
    info = export(composed("export", ["head=no_aspp", "width=0.35", "size=[65,81]", "format=tflite"]), tmp_path)
    assert (tmp_path / "model.tflite").is_file() and info["format"] == "tflite" and info["delegate"] == "XNNPACK"
    (check,) = info["parity"]
    assert check["size"] == list(SIZE) and check["max_abs_diff"] <= 1e-4
    assert info["delegation"]["xnnpack_delegated"] == info["delegation"]["ops_total"]
    saved = json.loads((tmp_path / "export.json").read_text())
    assert saved["input"]["shape"] == [1, 3, *SIZE] and saved["bytes"] == (tmp_path / "model.tflite").stat().st_size
    source = resolve(tmp_path / "model.tflite")  # the one resolver opens it, as every export
    assert source.kind == "tflite" and source.pad_to == 65


@pytest.mark.slow
def test_litert_int8_is_full_integer_with_the_executorch_quantization(tmp_path):
    """INT8: every conv reads int8 weights (the file is about a third of the float one), the model stays on
    XNNPACK, and its logits agree with the PT2E graph it came from."""
    from deeplab_mobile.deploy.litert import export_tflite, load_interpreter

    model = tiny_model()
    gen = torch.Generator().manual_seed(1)
    calibration = [torch.randn(1, 3, *SIZE, generator=gen) for _ in range(3)]
    f = export_tflite(model, tmp_path / "model.tflite", SIZE)
    q = export_tflite(model, tmp_path / "model.int8.tflite", SIZE, calibration=calibration, keep_float=("first",))
    assert q.stat().st_size < 0.45 * f.stat().st_size
    interpreter = load_interpreter(q, 1)
    ran = delegation(interpreter)
    assert ran["xnnpack_delegated"] == ran["ops_total"]
    int8_tensors = [t for t in interpreter.get_tensor_details() if t["dtype"] == np.int8]
    assert len(int8_tensors) > 2 * ran["ops"]["CONV_2D"]  # weights and activations
    x = torch.randn(1, 3, *SIZE)
    with torch.no_grad():
        agree = (TfliteSegmentor(q)(x).argmax(1) == model(x).argmax(1)).float().mean()
    assert agree > 0.8


@pytest.mark.slow
def test_openvino_f32_matches_pytorch_bf16_is_its_own_row_and_int8_comes_from_the_int8_onnx(tmp_path):
    """format=openvino: f32 within 1e-4 of PyTorch at two sizes (dynamic); bf16 labelled apart with what it ran in;
    onnx=<INT8 QDQ file> converted to IR with its convolutions run in 8 bits, checked against ONNX Runtime."""
    from deeplab_mobile.deploy import export_onnx
    from deeplab_mobile.deploy.meta import ExportMeta, OutputSpec, write_export_meta
    from deeplab_mobile.deploy.openvino import OpenVinoSegmentor, export_openvino
    from deeplab_mobile.deploy.quantize import quantize_model

    model = tiny_model(head="aspp")
    xml = export_openvino(model, tmp_path / "ir" / "model.xml", SIZE, dynamic=True)
    for size in (SIZE, (97, 65)):
        x = torch.randn(1, 3, *size)
        with torch.no_grad():
            assert (OpenVinoSegmentor(xml)(x) - model(x)).abs().max() <= 1e-4
    bf16 = OpenVinoSegmentor(xml, precision="bf16")
    f32 = OpenVinoSegmentor(xml)
    assert {p for by in f32.executed_precisions().values() for p in by} <= {"f32", "i32", "i64", "dynamic"}
    assert f32.executed_precisions()["Convolution"] == {"f32": sum(f32.executed_precisions()["Convolution"].values())}
    assert "Convolution" in bf16.executed_precisions()
    # INT8 from the quantize app's kind of file: QDQ ONNX with its export.json
    onnx_path = export_onnx(model, tmp_path / "q" / "model.onnx", SIZE, dynamic=True, upsample=False)
    write_export_meta(onnx_path, ExportMeta.of(model, None, ["N", 3, "H", "W"], OutputSpec(stride=16)))
    rng = np.random.default_rng(0)
    batches = (rng.standard_normal((1, 3, *SIZE), dtype=np.float32) for _ in range(3))
    int8 = quantize_model(onnx_path, tmp_path / "q" / "model.int8.onnx", batches)
    cfg = composed("export", ["format=openvino", f"onnx={int8}", "parity.sizes=[[65,81],[97,65]]"])
    info = export(cfg, tmp_path / "q" / "openvino")
    assert (tmp_path / "q" / "openvino" / "model.int8.xml").is_file() and info["output"]["stride"] == 16
    assert info["parity_reference"] == "ONNX Runtime on the ONNX file"
    rows = {(r["precision"], tuple(r["size"])): r for r in info["parity"]}
    assert set(rows) == {(p, s) for p in ("f32", "bf16") for s in ((65, 81), (97, 65))}
    assert all(r["argmax_agreement"] >= 0.95 for key, r in rows.items() if key[0] == "f32")
    convs = info["executed"]["f32"]["Convolution"]
    assert convs.get("u8", 0) + convs.get("i8", 0) >= sum(convs.values()) - 2  # the first and the classifier: float
    # it opens through the one resolver, as every export does
    source = resolve(tmp_path / "q" / "openvino" / "model.int8.xml")
    assert source.kind == "openvino" and source.output_stride == 16


SIGTERM_AFTER_OPENVINO = """
import os, signal, sys, time
import numpy as np, torch
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from tests.deploy.test_runtimes import SIZE, tiny_model
from deeplab_mobile.apps.export import OnnxRunner, openvino_parity
from deeplab_mobile.deploy import export_onnx
from deeplab_mobile.deploy.openvino import onnx_to_openvino
from deeplab_mobile.deploy.quantize import quantize_model
out = Path(sys.argv[2])
model = tiny_model(head="aspp")
onnx_path = export_onnx(model, out / "model.onnx", SIZE, dynamic=True, upsample=False)
rng = np.random.default_rng(0)
images = (rng.standard_normal((1, 3, *SIZE), dtype=np.float32) for _ in range(3))
int8 = quantize_model(onnx_path, out / "model.int8.onnx", images)
openvino_parity(onnx_to_openvino(int8, out / "model.int8.xml"), OnnxRunner(int8), [SIZE, (97, 65)], False, 0)
got = []
signal.signal(signal.SIGTERM, lambda signum, frame: got.append(signum))
os.kill(os.getpid(), signal.SIGTERM)
time.sleep(0.2)
print("handled", got)
"""


@pytest.mark.slow
def test_a_sigterm_after_openvino_runs_reaches_its_handler(tmp_path):
    """OpenVINO's CPU plugin leaves a freed alternate signal stack on the thread that called it; without
    ``kept_signal_stack`` the next SIGTERM killed the process with a segmentation fault (here, in a child)."""
    import subprocess

    from tests.helpers import ROOT

    proc = subprocess.run(
        [sys.executable, "-c", SIGTERM_AFTER_OPENVINO, str(ROOT), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "handled [15]" in proc.stdout


@pytest.mark.slow
def test_the_eval_app_scores_exports_as_it_scores_their_run(tmp_path, synthetic_voc):
    """scripts/eval.py weights=<export>: a LiteRT model (static, the size every image is padded to; single scale
    only) and an OpenVINO IR (free sizes, single scale and MF) of a trained run score its mIoU within 0.05 points, the
    record carries the network's Params and MAdds (counted on the network built from export.json), and a stride the
    export cannot take is refused in one line."""
    from PIL import Image

    from deeplab_mobile.apps.evaluate import evaluate_run
    from deeplab_mobile.apps.train import train
    from tests.helpers import tiny

    run = tmp_path / "run"
    train(tiny(synthetic_voc, "eval.mf=false", "eval.os=16", "trainer.iters=20", "trainer.eval_every=100"), run)
    side = max(max(Image.open(p).size) for p in (synthetic_voc / "JPEGImages").iterdir())
    common = ["eval.workers=0", "eval.os=16", f"eval.pad_to={side}", "progress=false"]
    by_run = evaluate_run(composed("eval", [f"run_dir={run}", "eval.mf=true", "eval.mf_scales=[0.75,1.0]", *common]))
    export(composed("export", [f"run_dir={run}", f"size=[{side},{side}]", "format=tflite"]), run / "export" / "litert")
    export(composed("export", [f"run_dir={run}", "dynamic=true", "format=openvino"]), run / "export" / "openvino")

    def file_eval(path, *extra):
        data = ["data=synthetic", f"data.root={synthetic_voc}", "data.generate=null", f"out_dir={tmp_path / 'e'}"]
        return evaluate_run(composed("eval", [f"weights={path}", *data, *common, *extra]))

    litert = file_eval(run / "export" / "litert" / "model.tflite", "name=litert")
    openvino = file_eval(run / "export" / "openvino" / "model.xml", "eval.mf_scales=[0.75,1.0]", "name=openvino")
    assert abs(litert["ss"]["miou"] - by_run["ss"]["miou"]) <= 0.0005 and "mf" not in litert
    assert abs(openvino["ss"]["miou"] - by_run["ss"]["miou"]) <= 0.0005
    assert abs(openvino["mf"]["miou"] - by_run["mf"]["miou"]) <= 0.0005
    for record in (litert, openvino):
        assert (record["params"], record["madds"], record["os"]) == (by_run["params"], by_run["madds"], 16)
    with pytest.raises(ValueError, match=r"^eval.os=8: .*model.xml: exported at output stride 16; re-export for 8"):
        file_eval(run / "export" / "openvino" / "model.xml", "eval.os=8", "name=y")
    assert not (tmp_path / "e" / "y").exists()
