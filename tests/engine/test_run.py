"""A run's life around the loop: the final stage's plan, the resume identity check, the status file, and how a run
ends (an expected failure, Ctrl-C, SIGTERM, anything else)."""

import json
import os
import signal

import pytest

from deeplab_mobile.engine.run import (
    ConfigMismatch,
    FinalStage,
    Terminated,
    check_same_run,
    flatten,
    run_guarded,
    write_status,
)


def test_final_stage_is_the_last_iterations_at_its_stride():
    stage = FinalStage.plan(2250, 8, 250, 0.001)
    assert (stage.start, stage.output_stride, stage.lr) == (2000, 8, 0.001)
    assert [stage.stride_at(i, 16) for i in (0, 1999, 2000, 2250)] == [16, 16, 8, 8]
    assert stage.record() == {"os": 8, "from_iteration": 2000, "lr": 0.001}
    assert FinalStage.plan(10, 8, 10).start == 0  # the whole run: at that stride from the first iteration


@pytest.mark.parametrize(
    "args, message",
    [((10, 12, 2), "output stride 12"), ((10, 8, 0), "got 0"), ((10, 8, 11), "got 11"), ((10, 8, 2, -1), "-1")],
)
def test_final_stage_refuses_what_it_cannot_honour(args, message):
    with pytest.raises(ValueError, match=message):
        FinalStage.plan(*args)


def test_a_resume_with_other_settings_lists_every_change(tmp_path):
    saved = flatten({"optim": {"lr": 0.007, "momentum": 0.9}, "trainer.iters": 100})
    assert saved == {"optim.lr": 0.007, "optim.momentum": 0.9, "trainer.iters": 100}
    check_same_run(saved, dict(saved), tmp_path)
    with pytest.raises(ConfigMismatch, match=r"optim.lr: 0.007 -> 0.1\n  trainer.iters: 100 -> None"):
        check_same_run(saved, {"optim.lr": 0.1, "optim.momentum": 0.9}, tmp_path)


def test_status_is_written_whole_and_only_by_the_main_process(tmp_path):
    write_status(tmp_path, "running", iteration=3)
    assert json.loads((tmp_path / "status.json").read_text()) == {"state": "running", "iteration": 3}
    write_status(tmp_path, "done", main=False)
    assert json.loads((tmp_path / "status.json").read_text())["state"] == "running"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["status.json"]  # no temporary file left


def state(folder):
    return json.loads((folder / "status.json").read_text())


def test_how_a_run_ends_is_recorded(tmp_path):
    def fail(exc):
        def job():
            raise exc

        return job

    assert run_guarded(lambda: 7, tmp_path, (ValueError,)) == 7
    with pytest.raises(SystemExit) as ended:  # an expected failure: its message, exit status 1
        run_guarded(fail(ValueError("bad data in x.png")), tmp_path, (ValueError,))
    assert ended.value.code == 1 and state(tmp_path) == {"state": "failed", "reason": "bad data in x.png"}
    with pytest.raises(ValueError):  # in a sweep it is raised, so Hydra records the job and goes on
        run_guarded(fail(ValueError("bad")), tmp_path, (ValueError,), sweep=True)
    with pytest.raises(KeyboardInterrupt):
        run_guarded(fail(KeyboardInterrupt()), tmp_path, (ValueError,))
    assert state(tmp_path)["state"] == "interrupted"
    with pytest.raises(RuntimeError):  # anything else: its type in the reason, and its traceback
        run_guarded(fail(RuntimeError("boom")), tmp_path, (ValueError,))
    assert state(tmp_path) == {"state": "failed", "reason": "RuntimeError: boom"}


def test_sigterm_unwinds_the_job_and_exits_with_143(tmp_path):
    def job():
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("SIGTERM did not interrupt the job")

    try:
        with pytest.raises(SystemExit) as ended:
            run_guarded(job, tmp_path, (ValueError,))
    finally:
        Terminated.received = False
    assert ended.value.code == 128 + signal.SIGTERM
    assert state(tmp_path)["state"] == "interrupted" and "SIGTERM" in state(tmp_path)["reason"]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is gone after the run
