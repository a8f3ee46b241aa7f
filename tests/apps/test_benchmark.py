"""The benchmark app: its tables and goal lines from a tiny run; its networks are Table 7's."""

import json

import pytest

from deeplab_mobile.bench.models import NETWORKS, OURS_BY_HEAD, build, label, main
from deeplab_mobile.models import HEADS
from deeplab_mobile.table7 import LAST_TAP_ROW, TABLE7

pytestmark = pytest.mark.slow  # the benchmark end to end


def test_benchmark_writes_its_tables(tmp_path):
    out = tmp_path / "bench"
    code = main(
        [
            "--models",
            "candidate",
            "tv_lraspp_mnv3",
            "--threads",
            "1",
            "--size",
            "65",
            "--warmup",
            "1",
            "--repeats",
            "2",
            "--compile",
            "--executorch",
            "--profile",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    result = json.loads((out / "benchmark.json").read_text())
    rows = {r["network"]: r for r in result["cpu"]}
    assert set(rows) == {"mnv2_os16_no_aspp", "tv_lraspp_mnv3"}
    cand = rows["mnv2_os16_no_aspp"]
    assert cand["eager"]["repeats"] == 2 and cand["onnxruntime"]["median_ms"] > 0
    rate = result["matmul_gflops"]["1"]
    assert cand["floor_ms"] == pytest.approx(1000 * cand["gflop"] / rate)
    assert any("matmul floor" in g for g in result["goals"])
    assert "LR-ASPP" in (out / "benchmark.md").read_text()
    # INT8 rows for the Table 7 networks only (the peers are timed as they are)
    assert cand["onnxruntime_int8"]["median_ms"] > 0 and cand["int8_mb"] < 0.5 * cand["onnx_mb"]
    assert "onnxruntime_int8" not in rows["tv_lraspp_mnv3"]
    assert any("candidate INT8" in g and "float ONNX Runtime" in g for g in result["goals"])
    assert any(g.startswith("candidate INT8 file") for g in result["goals"])
    # the profile: float and INT8, the final resize as a Resize node and as two MatMuls, its share of the kernels
    profile = {(r["resize"], r["model"]): r for r in result["profile"]}
    assert set(profile) == {(r, m) for r in ("interpolate", "matmul") for m in ("float", "int8")}
    assert {"Resize", "Upsample"} & set(profile["interpolate", "float"]["ops"])  # the profiler's names for Resize
    assert "MatMul" in profile["matmul", "float"]["ops"]
    for r in profile.values():
        assert 0 < r["resize_ms"] < r["kernels_ms"] and r["resize_share"] == r["resize_ms"] / r["kernels_ms"]
        assert sum(r["ops"].values()) == pytest.approx(r["kernels_ms"])
    assert "final resize" in (out / "benchmark.md").read_text()


def test_the_benchmark_networks_are_table7s():
    assert NETWORKS == [row.variant for row in (*TABLE7, LAST_TAP_ROW)]
    assert label("mnv2_os16_no_aspp") == "MNet V2* OS16 (candidate)" and label("r101_os8_aspp") == "ResNet-101 OS8 ASPP"


def test_the_heads_group_is_every_head_on_both_encoders():
    """``--models heads``: each head on MobileNetV2 (Table 7's tap) and MobileNetV3-Large at OS16, built as named."""
    assert len(OURS_BY_HEAD) == 2 * len(HEADS)
    for name in OURS_BY_HEAD:
        model = build(name)
        short, _, head = name.split("_", 2)
        assert model.head.name == head.removeprefix("os16_") and model.output_stride == 16
        assert model.encoder.name == {"mnv2": "mobilenet_v2", "mnv3": "mobilenet_v3"}[short]
        assert model.encoder.out_channels == {"mnv2": 320, "mnv3": 960}[short]
    assert label("mnv3_os16_lraspp") == "MNet V3 OS16 LR-ASPP"
    assert label("mnv2_os16_deeplabv3plus") == "MNet V2* OS16 V3+ (ASPP)"


def test_int8_tries_time_each_setting_and_the_resize_alone(tmp_path):
    """scripts/benchmark_int8.py on a tiny size: one INT8 file per setting (every layer int8 means no float kernel
    left), session options that give the same outputs, and resize-alone graphs that compute the resize."""
    import numpy as np
    import onnx
    import torch
    import torch.nn.functional as F
    from onnx import numpy_helper

    from deeplab_mobile.bench.int8 import main as int8_main
    from deeplab_mobile.bench.latency import ort_runner

    out = tmp_path / "int8"
    args = ["--size", "65", "--threads", "1", "--warmup", "1", "--repeats", "1", "--rounds", "2", "--out", str(out)]
    assert int8_main([*args, "--tries", "all_int8", "--sessions", "default", "no_spinning"]) == 0
    record = json.loads((out / "int8_tries.json").read_text())
    assert [r["try"] for r in record["tries"]] == ["float", "default", "all_int8"]  # the default always comes

    def float_kernels(name):
        graph = onnx.load(str(out / "onnx" / f"{name}.int8.onnx")).graph
        return sum(numpy_helper.to_array(i).dtype == np.float32 and len(i.dims) == 4 for i in graph.initializer)

    assert float_kernels("default") == 2 and float_kernels("all_int8") == 0  # first conv and classifier
    assert [r["max_abs_diff"] for r in record["sessions"]] == [0.0, 0.0]
    assert {r["form"] for r in record["resize"]} == {"interpolate", "matmul", "banded", "write"}
    assert all(len(r["ms_rounds"]) == 2 for r in record["tries"] + record["sessions"] + record["resize"])
    x = np.random.default_rng(0).standard_normal((1, 21, 5, 5), dtype=np.float32)  # what ort_runner feeds
    want = F.interpolate(torch.from_numpy(x), size=(65, 65), mode="bilinear", align_corners=False).numpy()
    for form in ("interpolate", "matmul", "banded"):
        got = ort_runner(out / "resize" / f"{form}.onnx", (5, 5), 1, channels=21)()[0]
        assert np.abs(got - want).max() < 1e-5
    assert "| all_int8 |" in (out / "int8_tries.md").read_text()


def test_runtimes_benchmark_tables_goals_and_what_ran(tmp_path):
    """Every runtime, float and INT8, the final resize's share, and the goal lines; the table's arithmetic checked
    on the rows it was computed from."""
    from deeplab_mobile.bench.runtimes import main as runtimes

    out = tmp_path / "runtimes"
    argv = ["--size", "65", "--threads", "1", "--rounds", "1", "--warmup", "1", "--repeats", "2", "--out", str(out)]
    assert runtimes([*argv, "--runtimes", "litert", "openvino"]) == 0  # ExecuTorch: the benchmark above times it
    record = json.loads((out / "runtimes.json").read_text())
    table = {(r["runtime"], r["precision"]): r for r in record["table"]}
    expected = {(r, p) for r in ("onnxruntime", "litert", "openvino") for p in ("float", "int8")}
    assert set(table) == expected | {("openvino", "bf16")}
    rows = {(r["runtime"], r["precision"], r["form"]): r for r in record["rows"]}
    ort = rows[("onnxruntime", "float", "full")]["ms"]
    for (runtime, precision), line in table.items():
        full, features = rows[(runtime, precision, "full")], rows[(runtime, precision, "features")]
        assert line["speedup_vs_float_ort"] == pytest.approx(ort / full["ms"])
        assert line["resize_share"] == pytest.approx(1 - features["ms"] / full["ms"])
    assert table[("litert", "int8")]["ran"]["xnnpack_delegated"] == table[("litert", "int8")]["ran"]["ops_total"]
    assert "u8" in table[("openvino", "int8")]["ran"]["Convolution"]
    assert set(table[("openvino", "bf16")]["ran"]["Convolution"]) <= {"bf16", "f32"}
    madds_per_s = record["madds"] / (table[("litert", "float")]["ms"] / 1000) / 1e9
    assert table[("litert", "float")]["gmadds_per_s"] == pytest.approx(madds_per_s)
    assert any(g.startswith("fastest INT8 at 1 thread") for g in record["goals"])
    assert any(g.startswith("INT8 .tflite") for g in record["goals"])
    line = table[("onnxruntime", "float")]  # one FMA is one multiply-add: GEMM GFLOP/s / 2 in MAdds
    assert line["gemm_share"] == pytest.approx(line["gmadds_per_s"] / (record["gemm_gflops"]["1"] / 2))
    assert "| LiteRT | int8 | 1 |" in (out / "runtimes.md").read_text()
