"""The typed records of a run folder (runfolder.py: Status, Metrics, Environment): written and read back unchanged,
versioned, and a run folder written before the schema (tests/fixtures/run-before-schema: the deterministic
quickstart's files, its checkpoint's saved identity beside them) still read by every reader, its resume accepted
by today's same command."""

import json
import shutil
from pathlib import Path

import pytest

from deeplab_mobile import compare
from deeplab_mobile.ablation.runs import read_run
from deeplab_mobile.apps.compare_runs import settings_of
from deeplab_mobile.config.model import load_run_config
from deeplab_mobile.config.run import identity, saved_identity
from deeplab_mobile.engine.report import metrics_record, write_metrics
from deeplab_mobile.runfolder import (
    METRICS_VERSION,
    Environment,
    RunFolder,
    RunFolderError,
    read_environment,
    read_metrics,
    write_environment,
)
from tests.helpers import composed

BEFORE = Path(__file__).parent / "fixtures" / "run-before-schema"


@pytest.fixture
def old_run(tmp_path):
    run = tmp_path / "old"
    shutil.copytree(BEFORE, run)
    return run


def test_a_metrics_record_round_trips_and_keeps_the_flat_layout(tmp_path):
    results = {"ss": {"miou": 0.5, "iou": [1.0, float("nan")], "pixel_acc": 0.9}}
    network = {"network": "MNet V2* x0.5", "os": 8, "width": 0.5}
    record = {"params": 700, "madds": 9000, "eval": {"os": 8, "mf": False}, "bootstrap": {"samples": 10}}
    metrics = metrics_record(results, ["bg", "cat"], network, record, "val", iteration=12, checkpoint="last.pt")
    write_metrics(tmp_path, metrics)
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert on_disk["version"] == METRICS_VERSION and on_disk["os"] == 8 and on_disk["params"] == 700
    assert on_disk["ss"]["iou"] == {"bg": 1.0, "cat": None} and on_disk["iteration"] == 12
    back = read_metrics(tmp_path)
    assert back == metrics and back.miou() == 0.5 and back.source == {"iteration": 12, "checkpoint": "last.pt"}
    assert (tmp_path / "per_class_iou.csv").read_text() == "class,iou_ss\nbg,1.000000\ncat,\n"


def test_an_environment_record_round_trips(tmp_path):
    env = Environment(python="3.11", cpu={"model": "x"}, threads={"intra_op": 2, "inter_op": 2})
    write_environment(tmp_path, env)
    assert read_environment(tmp_path) == env and json.loads((tmp_path / "environment.json").read_text())["version"]


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("metrics.json", {"miou": 1}, "not an evaluation's metrics"),
        ("metrics.json", {"ss": {"miou": 1}, "version": METRICS_VERSION + 1}, "newer than this code reads"),
        ("environment.json", [1], "not an environment record"),
    ],
)
def test_a_record_that_is_not_one_is_named(tmp_path, name, content, message):
    (tmp_path / name).write_text(json.dumps(content))
    read = read_metrics if name == "metrics.json" else read_environment
    with pytest.raises(RunFolderError, match=message):
        read(tmp_path / name)


def test_a_run_folder_written_before_the_schema_reads(old_run):
    on_disk = json.loads((old_run / "metrics.json").read_text())
    assert "version" not in on_disk  # written before metrics.json had a version
    metrics = read_metrics(old_run)
    assert metrics.version == 0 and metrics.miou("ss") == on_disk["ss"]["miou"] and metrics.miou("mf")
    assert metrics.network["network"] == on_disk["network"] and metrics.source["iteration"] == on_disk["iteration"]
    assert metrics.to_dict() == {**on_disk, "version": 0}  # nothing lost
    env = read_environment(old_run)
    assert env.version == 1 and env.cpu and env.data
    assert RunFolder(old_run).status().state == "done"
    cfg = load_run_config(old_run)  # typed: the loss of the name: form as today's node
    assert cfg.loss._target_ == "deeplab_mobile.engine.losses.CrossEntropy" and cfg.trainer.deterministic is True
    assert cfg.data.format is None  # a key the run's version did not write: its default


def test_the_same_command_resumes_a_run_written_before_the_schema(old_run):
    """The checkpoint's saved identity (the loss as name: ce) and today's identity of the command that started it
    agree, key for key: a resume is accepted; another seed is not."""
    saved = saved_identity({"config": json.loads((old_run / "identity.json").read_text())})
    overrides = [o.removeprefix("- ") for o in (old_run / ".hydra" / "overrides.yaml").read_text().splitlines()]
    assert saved == identity(composed("train", overrides))
    assert saved == identity(load_run_config(old_run))
    assert saved != identity(composed("train", [*overrides, "trainer.seed=1"]))


def test_the_readers_take_the_old_folder(old_run):
    record = compare.open_record(old_run, settings_of)
    assert record.metrics["ss"]["miou"] == read_metrics(old_run).miou() and record.environment["cpu"]
    assert record.config["loss._target_"].endswith("CrossEntropy")
    run = read_run(old_run, old_run.parent)
    assert run.state == "done" and run.arch["network"].startswith("MNet V2") and run.seed == 0
