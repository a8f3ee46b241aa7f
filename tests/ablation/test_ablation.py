"""Sweeps and their report: a real 2 x 2 multirun (head x os) on the generated data, read back into the table;
failed, unfinished and never-started runs; Table 7's rows, order and paper values; empty and foreign folders."""

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from deeplab_mobile.ablation import SweepError, build_rows, find_runs
from deeplab_mobile.ablation import report as ablation_table
from deeplab_mobile.ablation.runs import architecture
from deeplab_mobile.apps import evaluate
from deeplab_mobile.complexity import count_madds, count_params
from deeplab_mobile.models import build_model
from deeplab_mobile.table7 import TABLE7, build_row
from tests.helpers import ROOT, composed

TINY = [
    "recipe=cpu_synthetic",
    "width=0.35",
    "data.crop_size=65",
    "data.batch_size=4",
    "trainer.iters=3",
    "trainer.eval_every=0",
    "trainer.ckpt_every=3",
    "progress=false",
    "eval.mf=false",
]


def multirun(sweep_dir, data_root, *overrides):
    cmd = [
        sys.executable,
        str(ROOT / "scripts" / "train.py"),
        "-m",
        *TINY,
        *overrides,
        f"data.generate.root={data_root}",
        "data.generate.n_train=24",
        "data.generate.n_val=6",
        f"hydra.sweep.dir={sweep_dir}",
    ]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)


def report(folder, *args):
    assert ablation_table.main([str(folder), *args]) == 0
    out = Path(folder) / "report"
    return list(csv.DictReader(io.StringIO((out / "table.csv").read_text()))), out


@pytest.fixture(scope="module")
def head_os_sweep(tmp_path_factory):
    """``experiment=head_os`` on the generated data, two jobs at a time (the joblib launcher config), each with a
    DataLoader worker (a worker started inside a joblib process once died: "cannot find context for 'loky'")."""
    tmp = tmp_path_factory.mktemp("sweep")
    proc = multirun(
        tmp / "sweep", tmp / "data", "experiment=head_os", "hydra/launcher=parallel", "data.workers=1", "eval.workers=1"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp / "sweep"


@pytest.mark.slow
def test_two_by_two_sweep_table_has_four_rows_from_the_run_files(head_os_sweep):
    runs = sorted(p.name for p in head_os_sweep.iterdir() if (p / ".hydra").is_dir())
    assert len(runs) == 4 and all("experiment=head_os" in r for r in runs)
    labels = [dict(kv.split("=", 1) for kv in name.split(",")) for name in runs]
    assert sorted((d["head"], d["os"]) for d in labels) == [
        ("aspp", "16"),
        ("aspp", "8"),
        ("no_aspp", "16"),
        ("no_aspp", "8"),
    ]
    threads = max(1, os.cpu_count() // 2)  # two jobs at a time split the cores (trainer.threads=auto)
    for name in runs:
        log = next((head_os_sweep / name).glob("*.log")).read_text()
        assert f"2 at a time: {threads} CPU threads" in log
    rows, out = report(head_os_sweep)
    assert len(rows) == 4
    # Table 7's order: ASPP before no ASPP, OS16 before OS8
    assert [(r["aspp"], r["os"]) for r in rows] == [("True", "16"), ("True", "8"), ("False", "16"), ("False", "8")]
    for row in rows:
        head = "aspp" if row["aspp"] == "True" else "no_aspp"
        folder = head_os_sweep / row["runs"]  # one seed: one run a row
        settings = {tuple(kv.split("=", 1)) for kv in row["runs"].split(",")}
        assert {("head", head), ("os", row["os"]), ("trainer.seed", "0")} <= settings
        metrics = json.loads((folder / "metrics.json").read_text())
        assert float(row["val_miou"]) == pytest.approx(metrics["ss"]["miou"], abs=1e-12)
        assert (row["val_n"], row["val_sd"], row["seeds"]) == ("1", "", "0")
        low, high = metrics["ss"]["miou_ci95"]  # one seed: the record's own interval over images
        assert (float(row["val_ci_low"]), float(row["val_ci_high"])) == pytest.approx((low, high), abs=1e-12)
        assert row["val_ci_method"] == "images"
        model = build_model("mobilenet_v2", head, int(row["os"]), width=0.35)  # counted independently
        assert int(row["params"]) == count_params(model) and int(row["madds"]) == count_madds(model, 513)
        assert row["network"] == "MNet V2* x0.35" and row["state"] == "done" and row["mf"] == "False"
    markdown = (out / "table.md").read_text().splitlines()
    body = [line for line in markdown if "| MNet" in line]
    assert [line.split(" | ")[2:5] for line in body] == [["16", "✓", ""], ["8", "✓", ""], ["16", "", ""], ["8", "", ""]]
    assert [line.split(" | ")[0] for line in body] == ["| 1", "| 2", "| 3", "| 4"]
    assert body[0].split(" | ")[6] == f"{100 * float(rows[0]['val_miou']):.2f}"
    tex = (out / "table.tex").read_text()
    assert tex.count("\\checkmark") == 2 and tex.count("\\\\") == 5 and "\\_" not in tex.split("\\midrule")[0]
    png = (out / "miou_vs_madds.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None and image.shape[0] > 200 and image.shape[1] > 200


@pytest.mark.slow
def test_a_sweep_is_evaluated_on_its_test_split_and_reported_beside_val(head_os_sweep, tmp_path):
    """scripts/eval.py run_dir=<sweep> split=test: every run gets its test record, which joins its row."""
    sweep = tmp_path / "sweep"
    shutil.copytree(head_os_sweep, sweep, ignore=shutil.ignore_patterns("report", "tb"))
    cfg = composed("eval", [f"run_dir={sweep}", "split=test", "eval.mf=false", "eval.workers=0", "progress=false"])
    evaluate.main(cfg)
    rows, out = report(sweep)
    for row in rows:
        record = sweep / row["runs"] / "eval" / "os16_split-test"
        if row["os"] == "8":
            record = record.with_name("os8_split-test")
        metrics = json.loads((record / "metrics.json").read_text())
        assert float(row["test_miou"]) == pytest.approx(metrics["ss"]["miou"], abs=1e-12) and row["test_n"] == "1"
        assert metrics["split"] == "test" and (record / "per_image_confusion.npz").is_file()
    assert "| test mIoU |" in (out / "table.md").read_text()
    assert not (sweep / "eval" / ".hydra").exists() or all(r["network"] != "?" for r in rows)


@pytest.mark.slow
def test_never_started_and_failed_runs_are_listed(head_os_sweep, tmp_path):
    sweep = tmp_path / "sweep"
    shutil.copytree(head_os_sweep, sweep, ignore=shutil.ignore_patterns("report", "checkpoints", "tb"))
    runs = sorted(p for p in sweep.iterdir() if (p / ".hydra").is_dir())
    shutil.rmtree(runs[0])  # the sweep stopped before this job
    (runs[1] / "status.json").write_text(json.dumps({"state": "failed", "reason": "loss is nan at iteration 2"}))
    (runs[2] / "status.json").write_text(json.dumps({"state": "running", "iteration": 0}))
    rows, out = report(sweep)
    by_state = {r["state"]: r for r in rows}
    assert len(rows) == 4 and set(by_state) == {"not started", "failed", "unfinished", "done"}
    not_started = by_state["not started"]
    assert not_started["runs"] == runs[0].name  # the folder Hydra would have written
    assert (not_started["network"], not_started["os"], not_started["aspp"]) == ("MNet V2* x0.35", "16", "True")
    assert by_state["failed"]["reason"] == "loss is nan at iteration 2" and by_state["failed"]["val_miou"] == ""
    assert by_state["unfinished"]["runs"] == runs[2].name
    markdown = (out / "table.md").read_text()
    assert "loss is nan at iteration 2" in markdown and markdown.count("| failed |") == 1
    assert f"{runs[0].name.split(',')[0]}" in markdown and "not started" in markdown


@pytest.mark.slow
def test_a_failing_job_does_not_stop_the_sweep(tmp_path):
    proc = multirun(  # one stride throughout: the recipe's last stage does not fit in 3 iterations
        tmp_path / "sweep",
        tmp_path / "data",
        "head=no_aspp",
        "os=12,16",
        "data.workers=0",
        "eval.workers=0",
        "trainer.final_stage=null",
    )
    assert proc.returncode != 0  # Hydra reports the failed job at the end
    rows, _ = report(tmp_path / "sweep")
    states = {r["train_os"]: r for r in rows}
    metrics = json.loads((tmp_path / "sweep" / states["16"]["runs"] / "metrics.json").read_text())
    assert states["16"]["state"] == "done" and float(states["16"]["val_miou"]) == metrics["ss"]["miou"]
    assert states["16"]["os"] == "8"  # the synthetic recipe evaluates at OS8 (eval.os)
    assert "| 8 (trained 16) |" in (tmp_path / "sweep" / "report" / "table.md").read_text()
    assert states["12"]["state"] == "failed" and "output stride 12 is not supported" in states["12"]["reason"]


def fake_run(folder, overrides, metrics=None):
    """A run folder with the config that ``overrides`` compose to and, optionally, results."""
    cfg = composed("train", overrides)
    (folder / ".hydra").mkdir(parents=True)
    OmegaConf.save(cfg, folder / ".hydra" / "config.yaml")
    OmegaConf.save(OmegaConf.create(overrides), folder / ".hydra" / "overrides.yaml")
    if metrics is not None:
        (folder / "metrics.json").write_text(json.dumps(metrics))
        (folder / "status.json").write_text(json.dumps({"state": "done"}))
    return cfg


def test_table7_per_stride_rows_match_the_paper_in_its_order(tmp_path):
    """Eight VOC runs (one per conf/variant file), each evaluated SS and MF: the eight rows with paper values are
    Table 7's rows in Table 7's order, with each run's own numbers."""
    expected = {}
    for i, row in enumerate(TABLE7):
        variant = row.variant
        fake_run(tmp_path / f"variant={variant}", [f"variant={variant}"])
        with torch.device("meta"):
            params = count_params(build_row(row))
        metrics = {
            "params": params,
            "madds": 1000 + i,
            "madds_mf": 2000 + i,
            "ss": {"miou": 0.5 + i / 100},
            "mf": {"miou": 0.6 + i / 100},
        }
        (tmp_path / f"variant={variant}" / "metrics.json").write_text(json.dumps(metrics))
        (tmp_path / f"variant={variant}" / "status.json").write_text(json.dumps({"state": "done"}))
        expected[variant] = metrics
    rows = build_rows(find_runs(tmp_path))
    assert len(rows) == 16
    matched = [r for r in rows if r.paper is not None]
    assert [r.paper for r in matched] == list(TABLE7)
    for r in matched:
        m = expected[r.runs[0].split("=")[1]]
        assert r.miou == m["mf" if r.mf else "ss"]["miou"] and r.madds == m["madds_mf" if r.mf else "madds"]
        assert (r.arch["os"], r.arch["head"] == "aspp", r.mf) == (r.paper.os, r.paper.aspp, r.paper.mf)
    assert [r.network for r in matched] == [p.network for p in TABLE7]
    markdown = ablation_table.to_markdown(rows)
    assert "| MNet V2* | 16 |  |  | " in markdown and "| 75.32 | 2.11M | 2.75B |" in markdown
    assert "| 50.00 |  | -7.00 |" in markdown  # one seed of a record without per-image matrices: no interval


def test_table7_as_the_model_zoo_ran_it_fills_eight_rows_from_four_runs(tmp_path):
    """experiment=table7: the four OS16 networks, each record holding single scale at OS16 and MF + flip at OS8;
    the report's eight rows are Table 7's, in its order, and say which stride was trained and which evaluated."""
    trained = [row for row in TABLE7 if row.os == 16]
    assert len(trained) == 4
    scales = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
    for i, row in enumerate(trained):
        folder = tmp_path / f"variant={row.variant}"
        cfg = fake_run(folder, ["experiment=table7", f"variant={row.variant}"])
        assert (cfg.eval.os, cfg.eval.mf_os, cfg.eval.mf) == (None, 8, True)
        metrics = {
            "params": 1,
            "madds": 100 + i,
            "madds_mf": 200 + i,
            "ss": {"miou": 0.5},
            "mf": {"miou": 0.6},
            "eval": {"os": 16, "mf": True, "mf_os": 8, "mf_scales": scales, "flip": True},
        }
        (folder / "metrics.json").write_text(json.dumps(metrics))
        (folder / "status.json").write_text(json.dumps({"state": "done"}))
    rows = build_rows(find_runs(tmp_path))
    assert [r.paper for r in rows] == list(TABLE7)
    assert [r.madds for r in rows] == [m for i in range(4) for m in (100 + i, 200 + i)]
    markdown = ablation_table.to_markdown(rows)
    assert markdown.count("| 16 |") == 4 and markdown.count("| 8 (trained 16) |") == 4
    assert "MF = scales 0.5, 0.75, 1, 1.25, 1.5, 1.75 x flip" in markdown


def test_the_report_picks_which_evaluations_make_rows(tmp_path, capsys):
    """The training's own protocol makes the rows by default, with the same protocol on another split in that
    split's columns; the run's other records are listed; --eval picks records by name (or all), each row at the
    stride its evaluation ran."""
    metrics = {"params": 1, "madds": 2, "ss": {"miou": 0.25}, "eval": {"os": 16, "mf": False}, "split": "val"}
    fake_run(tmp_path / "a", ["variant=mnv2_os16_no_aspp"], metrics)
    later = {
        "params": 1,
        "madds": 3,
        "madds_mf": 4,
        "ss": {"miou": 0.3},
        "mf": {"miou": 0.4},
        "split": "val",
        "eval": {"os": 16, "mf": True, "mf_os": 8, "mf_scales": [1.0], "flip": True},
    }
    test = {"params": 1, "madds": 2, "ss": {"miou": 0.2}, "split": "test", "eval": {"os": 16, "mf": False}}
    for name, record in (("os16_mf-os8-1-flip", later), ("os16_split-test", test)):
        (tmp_path / "a" / "eval" / name).mkdir(parents=True)
        (tmp_path / "a" / "eval" / name / "metrics.json").write_text(json.dumps(record))
    rows, out = report(tmp_path)
    got = [(r["evaluation"], r["os"], r["val_miou"], r["test_miou"], r["test_records"]) for r in rows]
    assert got == [("os16", "16", "0.25", "0.2", "a/os16_split-test")]
    assert "a: other evaluations os16_mf-os8-1-flip" in (out / "table.md").read_text()
    rows, out = report(tmp_path, "--eval", "all")
    got = [(r["evaluation"], r["os"], r["mf"], r["val_miou"], r["test_miou"], r["madds"]) for r in rows]
    assert got == [("os16", "16", "False", "0.25", "0.2", "2"), ("mf-os8-1-flip", "8", "True", "0.4", "", "4")]
    table = (out / "table.md").read_text()
    assert "| Network | OS | ASPP | MF | Evaluation | n | val mIoU |" in table and "| test mIoU |" in table
    assert "| MF 1 + flip |" in table and "rows 1, 2: records without per_image_confusion.npz" in table
    assert "other evaluations" not in table
    # Table 7's MF rows are at the paper's six scales: an MF evaluation at others has no paper values beside it
    assert [r["paper_params_m"] for r in rows] == ["2.11", ""]
    rows, _ = report(tmp_path, "--eval", "os16_mf-os8-1-flip")
    assert [(r["evaluation"], r["val_records"]) for r in rows] == [
        ("os16", "a/train"),
        ("mf-os8-1-flip", "a/os16_mf-os8-1-flip"),
    ]


def test_paper_miou_only_beside_voc_runs(tmp_path):
    metrics = {"params": 1, "madds": 2, "ss": {"miou": 0.25}}
    fake_run(
        tmp_path / "a",
        ["variant=mnv2_os16_no_aspp", "recipe=cpu_synthetic", "eval.os=null", "trainer.final_stage=null"],
        metrics,
    )
    (row,) = build_rows(find_runs(tmp_path))
    assert row.paper is not None and row.paper.miou == 75.32  # the architecture matches ...
    (csv_row,) = csv.DictReader(io.StringIO(ablation_table.to_csv([row])))
    assert csv_row["paper_miou"] == "" and csv_row["paper_params_m"] == "2.11"  # ... the data does not


def test_width_and_tap_variants_are_named_and_not_matched(tmp_path):
    fake_run(tmp_path / "w", ["variant=mnv2_os16_no_aspp", "width=0.5"], {"params": 1, "madds": 2, "ss": {"miou": 0.1}})
    fake_run(tmp_path / "t", ["encoder=mobilenet_v2", "tap=last"], {"params": 1, "madds": 2, "ss": {"miou": 0.1}})
    rows = build_rows(find_runs(tmp_path))
    assert [(r.network, r.paper) for r in rows] == [("MNet V2* x0.5", None), ("MNet V2 (1280 tap)", None)]


def test_a_run_ending_at_another_stride_is_a_row_at_that_stride(tmp_path):
    overrides = ["variant=mnv2_os16_no_aspp", "trainer.final_stage={os:8,iters:10}"]
    fake_run(tmp_path / "a", overrides, {"params": 1, "madds": 2, "ss": {"miou": 0.1}})
    (row,) = build_rows(find_runs(tmp_path))
    assert (row.arch["os"], row.arch["train_os"], row.arch["final_os"]) == (8, 16, 8)
    assert "| MNet V2* | 8 (trained 16, then 8) |" in ablation_table.to_markdown([row])
    (csv_row,) = csv.DictReader(io.StringIO(ablation_table.to_csv([row])))
    assert (csv_row["os"], csv_row["train_os"], csv_row["final_os"]) == ("8", "16", "8")


def test_an_int8_column_where_a_run_was_quantized(tmp_path):
    """quant/quant.json (scripts/quantize.py) fills an INT8 mIoU column beside the rows it evaluated the same way:
    the training's record, its split and stride, and MF only at the same scales."""
    metrics = {
        "params": 1,
        "madds": 2,
        "madds_mf": 3,
        "ss": {"miou": 0.5},
        "mf": {"miou": 0.6},
        "split": "val",
        "eval": {"os": 16, "mf": True, "mf_scales": [1.0], "flip": True},
    }
    fake_run(tmp_path / "a", ["variant=mnv2_os16_no_aspp"], metrics)
    fake_run(tmp_path / "b", ["variant=mnv2_os16_aspp"], metrics)
    quant = {
        "os": 16,
        "eval": {"split": "val", "mf": {"scales": [0.5, 1.0]}},
        "miou": {"float": {"ss": 0.5, "mf": 0.6}, "int8": {"ss": 0.49, "mf": 0.58}},
    }
    (tmp_path / "a" / "quant").mkdir()
    (tmp_path / "a" / "quant" / "quant.json").write_text(json.dumps(quant))
    rows, out = report(tmp_path)
    got = {(r["runs"], r["mf"]): r["int8_miou"] for r in rows}
    assert got == {("a", "False"): "0.49", ("a", "True"): "", ("b", "False"): "", ("b", "True"): ""}
    table = (out / "table.md").read_text()
    assert "| INT8 mIoU |" in table and "| 49.00 |" in table


def test_other_heads_get_a_head_column_in_order(tmp_path):
    """experiment=heads: the heads are named (a Head column instead of ASPP's tick), Table 7's two first."""
    metrics = {"params": 1, "madds": 2, "ss": {"miou": 0.1}}
    for head in ("lraspp", "no_aspp", "deeplabv3plus", "aspp"):
        fake_run(tmp_path / f"v3_{head}", ["experiment=heads", "encoder=mobilenet_v3", f"head={head}"], metrics)
    fake_run(tmp_path / "v2_lraspp", ["experiment=heads", "encoder=mobilenet_v2", "head=lraspp"], metrics)
    rows, out = report(tmp_path)
    assert [(r["network"], r["head"]) for r in rows] == [
        ("MNet V2*", "lraspp"),
        ("MNet V3", "aspp"),
        ("MNet V3", "no_aspp"),
        ("MNet V3", "deeplabv3plus"),
        ("MNet V3", "lraspp"),
    ]
    table = (out / "table.md").read_text()
    assert "| Network | OS | Head | MF |" in table and "| MNet V3 | 16 | V3+ (ASPP) |" in table
    assert "| MNet V3 | 16 | LR-ASPP |" in table


def test_losses_get_a_loss_column(tmp_path):
    """experiment=losses: runs alike but for the loss are separate rows, each named by its loss (plain CE as CE)."""
    metrics = {"params": 1, "madds": 2, "ss": {"miou": 0.1}}
    for loss in ("ce", "weighted_ce", "hard_pixels", "ce_dice"):
        fake_run(tmp_path / loss, ["experiment=losses", f"loss={loss}"], metrics)
    rows, out = report(tmp_path)
    assert sorted(r["loss"] for r in rows) == sorted(
        ["CE", "CE weighted median_frequency", "hard pixels 25%", "CE + Dice"]
    )
    table = (out / "table.md").read_text()
    assert "| MF | Loss |" in table and "| hard pixels 25% |" in table


@pytest.mark.slow
def test_latency_is_measured_and_reported(tmp_path):
    fake_run(
        tmp_path / "a", ["variant=mnv2_os16_no_aspp", "width=0.35"], {"params": 1, "madds": 2, "ss": {"miou": 0.1}}
    )
    rows, _ = report(tmp_path, "--latency", "cpu", "--latency-size", "65")
    latency = json.loads((tmp_path / "a" / "latency.json").read_text())
    assert latency["size"] == 65 and latency["repeats"] == 10 and 0 < latency["min_ms"] <= latency["median_ms"]
    assert float(rows[0]["latency_ms"]) == pytest.approx(latency["median_ms"])
    assert latency["runtime"] == "torch" and "Latency (torch, CPU" in (tmp_path / "report" / "table.md").read_text()


def test_latency_of_a_runtime_is_read_from_quant_json(tmp_path):
    """--latency ort_int8 / executorch: what scripts/quantize.py timed for each run, at --latency-threads, the
    runtime named in the column; a run not quantized has an empty cell."""
    metrics = {"params": 1, "madds": 2, "ss": {"miou": 0.1}}
    fake_run(tmp_path / "a", ["variant=mnv2_os16_no_aspp"], metrics)
    fake_run(tmp_path / "b", ["variant=mnv2_os16_aspp"], metrics)
    latency = {"int8": {"1": 12.5, "2": 8.25}, "float_pte": {"1": 30.0, "2": 20.0}}
    (tmp_path / "a" / "quant").mkdir()
    (tmp_path / "a" / "quant" / "quant.json").write_text(
        json.dumps({"latency_ms": latency, "latency_size": [129, 129]})
    )
    rows, out = report(tmp_path, "--latency", "ort_int8", "--latency-threads", "2")
    assert {r["runs"]: r["latency_ms"] for r in rows} == {"a": "8.25", "b": ""}
    assert "| Latency (ORT INT8, CPU, 2 threads, 129x129) |" in (out / "table.md").read_text()
    rows, out = report(tmp_path, "--latency", "executorch")
    assert {r["runs"]: r["latency_ms"] for r in rows} == {"a": "30.0", "b": ""}
    assert "Latency (ExecuTorch float, CPU, 1 thread, 129x129)" in (out / "table.md").read_text()


def test_eval_subfolder_is_not_a_run(tmp_path):
    fake_run(tmp_path / "a", ["head=no_aspp"], {"params": 1, "madds": 2, "ss": {"miou": 0.1}})
    (tmp_path / "a" / "eval" / ".hydra").mkdir(parents=True)
    (tmp_path / "a" / "eval" / ".hydra" / "config.yaml").write_text("run_dir: x\n")
    assert [r.name for r in find_runs(tmp_path)] == ["a"]


def test_empty_missing_and_foreign_folders_are_refused(tmp_path, capsys):
    with pytest.raises(SweepError, match="holds no training runs"):
        find_runs(tmp_path)
    assert ablation_table.main([str(tmp_path)]) == 2
    assert "outputs/multirun/<date>" in capsys.readouterr().err
    with pytest.raises(SweepError, match="no such folder"):
        find_runs(tmp_path / "nope")
    foreign = tmp_path / "complexity_run" / ".hydra"
    foreign.mkdir(parents=True)
    (foreign / "config.yaml").write_text("input_size: 513\nmf: false\n")
    with pytest.raises(SweepError, match="no training runs of scripts/train.py"):
        find_runs(tmp_path)
    assert not (tmp_path / "report").exists()


@pytest.mark.parametrize(
    "experiment, grid",
    [
        ("table7", {"variant": sorted(row.variant for row in TABLE7 if row.os == 16)}),
        ("table7_per_stride", {"variant": sorted(row.variant for row in TABLE7)}),
        ("head_os", {"head": ["aspp", "no_aspp"], "os": ["16", "8"]}),
        ("width", {"width": ["0.35", "0.5", "0.75", "1.0"]}),
        ("tap", {"tap": ["second_last", "last"]}),
        (
            "heads",
            {"encoder": ["mobilenet_v2", "mobilenet_v3"], "head": ["aspp", "no_aspp", "deeplabv3plus", "lraspp"]},
        ),
    ],
)
def test_experiments_sweep_their_grid(experiment, grid):
    cfg = composed("train", [f"experiment={experiment}"], return_hydra_config=True)
    params = {k: sorted(str(v).split(",")) for k, v in cfg.hydra.sweeper.params.items()}
    assert params.pop("trainer.seed") == ["range(1)"]  # every sweep names its seed (seeds=N: N of them)
    assert params == {k: sorted(v) for k, v in grid.items()}
    rows = {row.variant: row for row in TABLE7}
    for key, values in grid.items():  # every point composes to the network it names
        for value in values:
            arch = architecture(composed("train", [f"experiment={experiment}", f"{key}={value}"]))
            if key == "variant":
                row = rows[value]
                assert (arch["encoder"], arch["tap"], arch["head"], arch["os"], arch["width"]) == (
                    row.encoder,
                    row.tap,
                    row.head,
                    row.os,
                    1.0,
                )
            else:
                assert str(arch[key]) == value
