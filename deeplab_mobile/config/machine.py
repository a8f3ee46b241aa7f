"""How the jobs of a sweep share one machine (the joblib launcher)."""

from __future__ import annotations

import logging
import os

import torch
from hydra.types import RunMode
from omegaconf import DictConfig

log = logging.getLogger(__name__)


def share_machine(cfg: DictConfig, hydra_cfg: DictConfig | None) -> str:
    """Jobs that a launcher runs side by side on one machine (joblib) split its cores and its GPUs.

    Each job would otherwise start as many compute threads as the machine has cores, and n jobs would fight over
    them (each ran many times slower than one alone). With ``trainer.threads=auto`` a job takes
    cores / n_jobs threads; with ``trainer.device=auto`` and several GPUs, job k takes GPU k mod the GPU count.
    Sequential runs and torchrun processes keep torch's defaults. Returns the job's device (``trainer.device``, or
    the GPU it takes); the config is not changed (the run's plan holds the device: ``config.plan``).
    """
    launcher = (hydra_cfg.get("launcher") or {}) if hydra_cfg is not None else {}
    parallel = "joblib" in str(launcher.get("_target_") or "").lower() and hydra_cfg.mode == RunMode.MULTIRUN
    n_jobs = int(launcher.get("n_jobs") or 1) if parallel else 1
    cores = os.cpu_count() or 1
    n_jobs = cores if n_jobs < 0 else n_jobs  # joblib's -1 = as many jobs as cores
    threads = cfg.trainer.threads
    if threads == "auto":
        threads = max(1, cores // n_jobs) if n_jobs > 1 else None
    if threads:
        torch.set_num_threads(int(threads))
    gpus = torch.cuda.device_count()
    device = str(cfg.trainer.device)
    if n_jobs > 1 and device == "auto" and gpus > 1:
        device = f"cuda:{hydra_cfg.job.num % gpus}"
    if n_jobs > 1:
        log.info(
            "job %d, %d at a time: %d CPU threads, device %s",
            hydra_cfg.job.num,
            n_jobs,
            torch.get_num_threads(),
            device,
        )
    return device
