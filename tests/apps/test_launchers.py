"""The sweep launchers: their configs compose, parallel jobs split the machine, and a multi-task Slurm job
(submitit) gets torch.distributed's environment."""

import os

import pytest
import torch
from hydra.types import RunMode
from omegaconf import OmegaConf

from deeplab_mobile.config.machine import share_machine
from deeplab_mobile.engine.distributed import export_submitit_env
from tests.helpers import composed

pytestmark = pytest.mark.slow  # sweeps in subprocesses

TORCH_ENV = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def hydra_config(launcher):
    return composed("train", [f"hydra/launcher={launcher}"], return_hydra_config=True)


def test_launcher_configs_compose_onto_the_plugins():
    parallel = hydra_config("parallel").hydra.launcher
    assert parallel._target_.endswith("JoblibLauncher") and parallel.n_jobs == 2
    slurm = hydra_config("slurm").hydra.launcher
    assert slurm._target_.endswith("SlurmLauncher") and slurm.max_num_timeout > 0 and slurm.gpus_per_node == 1
    assert slurm.submitit_folder.endswith("/.submitit/%j")  # inside the sweep folder


@pytest.mark.parametrize("n_jobs, expected", [(2, max(1, os.cpu_count() // 2)), (-1, 1)])
def test_parallel_jobs_split_the_cores(n_jobs, expected):
    cfg = hydra_config("parallel")
    hydra_cfg = cfg.hydra
    hydra_cfg.launcher.n_jobs = n_jobs
    hydra_cfg.mode = RunMode.MULTIRUN
    OmegaConf.update(hydra_cfg, "job.num", 0, force_add=True)
    before = torch.get_num_threads()
    try:
        share_machine(cfg, hydra_cfg)
        assert torch.get_num_threads() == expected
    finally:
        torch.set_num_threads(before)


def test_a_single_run_keeps_torch_threads():
    cfg = hydra_config("basic")
    before = torch.get_num_threads()
    cfg.hydra.mode = RunMode.RUN
    share_machine(cfg, cfg.hydra)
    assert torch.get_num_threads() == before


def local_job_env(monkeypatch, ntasks, rank):
    # submitit's export writes os.environ itself: give it a copy, so nothing leaks into later tests
    monkeypatch.setattr(os, "environ", {k: v for k, v in os.environ.items() if k not in TORCH_ENV})
    env = {
        "SUBMITIT_EXECUTOR": "local",
        "SUBMITIT_LOCAL_JOB_ID": "123",
        "SUBMITIT_LOCAL_NTASKS": str(ntasks),
        "SUBMITIT_LOCAL_JOB_NUM_NODES": "1",
        "SUBMITIT_LOCAL_NODEID": "0",
        "SUBMITIT_LOCAL_GLOBALID": str(rank),
        "SUBMITIT_LOCAL_LOCALID": str(rank),
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)


def test_submitit_tasks_get_torch_distributed_env(monkeypatch):
    local_job_env(monkeypatch, ntasks=2, rank=1)
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    export_submitit_env()
    assert (os.environ["WORLD_SIZE"], os.environ["RANK"], os.environ["LOCAL_RANK"]) == ("2", "1", "1")
    assert os.environ["MASTER_ADDR"] and 20000 <= int(os.environ["MASTER_PORT"]) <= 60000
    assert os.environ.get("CUDA_VISIBLE_DEVICES") == visible  # each task picks GPU LOCAL_RANK itself


def test_single_task_and_torchrun_are_left_alone(monkeypatch):
    local_job_env(monkeypatch, ntasks=1, rank=0)
    export_submitit_env()
    assert not any(k in os.environ for k in TORCH_ENV)
    local_job_env(monkeypatch, ntasks=2, rank=1)
    monkeypatch.setenv("WORLD_SIZE", "4")  # torchrun inside the job: its variables win
    export_submitit_env()
    assert os.environ["WORLD_SIZE"] == "4" and "RANK" not in os.environ
