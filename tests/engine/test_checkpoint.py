"""Checkpoints: atomic writes, safe loading with named errors, random-state round trips."""

import os
import pickle
import random
import signal

import numpy as np
import pytest
import torch

from deeplab_mobile.engine import checkpoint as ckpt
from deeplab_mobile.engine.checkpoint import (
    CheckpointError,
    load_checkpoint,
    model_state,
    rng_states,
    save_checkpoint,
    set_rng_states,
)


def test_save_and_load_round_trip(tmp_path):
    state = {"iteration": 7, "model": {"w": torch.arange(4.0)}, "config": {"optim.lr": 0.007, "data.scales": [0.5]}}
    save_checkpoint(tmp_path / "c" / "last.pt", state)
    got = load_checkpoint(tmp_path / "c" / "last.pt")
    assert got["iteration"] == 7 and torch.equal(got["model"]["w"], torch.arange(4.0))
    assert got["config"] == state["config"]
    assert [p.name for p in (tmp_path / "c").iterdir()] == ["last.pt"]  # no temporary file left behind


def test_a_crash_while_writing_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"iteration": 1})

    def dies_halfway(obj, f):
        f.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(ckpt.torch, "save", dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {"iteration": 2})
    monkeypatch.undo()
    assert load_checkpoint(path)["iteration"] == 1


class Stop(Exception):
    pass


def test_sigterm_during_a_write_takes_effect_once_the_checkpoint_is_whole(tmp_path, monkeypatch):
    """A SIGTERM whose handler raises, arriving in the middle of torch.save: the handler must run only after the
    new checkpoint is complete and renamed into place, so its exception is the one that comes out."""
    path = tmp_path / "last.pt"
    real_save = torch.save

    def signalled_halfway(obj, f):
        f.write(b"")
        os.kill(os.getpid(), signal.SIGTERM)  # delivered here if the signal is not held
        real_save(obj, f)

    def handler(signum, frame):
        raise Stop

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        monkeypatch.setattr(ckpt.torch, "save", signalled_halfway)
        with pytest.raises(Stop):
            save_checkpoint(path, {"iteration": 3})
    finally:
        signal.signal(signal.SIGTERM, previous)
    monkeypatch.undo()
    assert load_checkpoint(path)["iteration"] == 3
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_missing_truncated_and_unsafe_files_are_named(tmp_path):
    with pytest.raises(CheckpointError, match=r"absent\.pt: checkpoint not found"):
        load_checkpoint(tmp_path / "absent.pt")
    good = tmp_path / "good.pt"
    save_checkpoint(good, {"model": {"w": torch.ones(1000)}})
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:500])
    with pytest.raises(CheckpointError, match=r"truncated\.pt: unreadable checkpoint"):
        load_checkpoint(truncated)
    unsafe = tmp_path / "unsafe.pt"  # a pickle that would import and call code: refused by weights_only
    unsafe.write_bytes(pickle.dumps({"model": random.Random(0)}))
    with pytest.raises(CheckpointError, match=r"unsafe\.pt: unreadable checkpoint"):
        load_checkpoint(unsafe)
    listed = tmp_path / "list.pt"
    torch.save([1, 2], listed)
    with pytest.raises(CheckpointError, match=r"list\.pt: not a checkpoint"):
        load_checkpoint(listed)


def test_model_state_accepts_training_checkpoints_and_bare_state_dicts():
    sd = {"w": torch.zeros(2)}
    assert model_state({"model": sd, "iteration": 3}, "x.pt") is sd
    assert model_state(sd, "x.pt") is sd
    with pytest.raises(CheckpointError, match="x.pt: no model state dict"):
        model_state({"iteration": 3}, "x.pt")


def test_random_states_survive_a_save_and_load(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    save_checkpoint(tmp_path / "rng.pt", {"rng": rng_states()})
    want = (random.random(), np.random.rand(), torch.rand(1))
    random.seed(9), np.random.seed(9), torch.manual_seed(9)  # move every generator elsewhere
    set_rng_states(load_checkpoint(tmp_path / "rng.pt")["rng"])
    got = (random.random(), np.random.rand(), torch.rand(1))
    assert got[0] == want[0] and got[1] == want[1] and torch.equal(got[2], want[2])
