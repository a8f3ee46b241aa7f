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
)
from deeplab_mobile.runfolder import Attempt, RunFolder


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


def state(folder):
    return json.loads((folder / "status.json").read_text())


def begun(folder, iteration=0):
    attempt = Attempt(RunFolder(folder))
    attempt.begin(iteration)
    return attempt


def test_how_a_run_ends_is_recorded(tmp_path):
    def fail(exc):
        def job():
            raise exc

        return job

    assert run_guarded(lambda: 7, begun(tmp_path), (ValueError,)) == 7
    with pytest.raises(SystemExit) as ended:  # an expected failure: its message, exit status 1
        run_guarded(fail(ValueError("bad data in x.png")), begun(tmp_path), (ValueError,))
    assert ended.value.code == 1
    assert {k: v for k, v in state(tmp_path).items() if k != "time"} == {
        "state": "failed",
        "iteration": 0,
        "reason": "bad data in x.png",
        "version": 1,
    }
    with pytest.raises(ValueError):  # in a sweep it is raised, so Hydra records the job and goes on
        run_guarded(fail(ValueError("bad")), begun(tmp_path), (ValueError,), sweep=True)
    with pytest.raises(KeyboardInterrupt):
        run_guarded(fail(KeyboardInterrupt()), begun(tmp_path), (ValueError,), hint=lambda: "resume=true continues")
    assert state(tmp_path)["state"] == "interrupted"
    with pytest.raises(RuntimeError):  # anything else: its type in the reason, and its traceback
        run_guarded(fail(RuntimeError("boom")), begun(tmp_path), (ValueError,))
    assert state(tmp_path)["reason"] == "RuntimeError: boom"
    outcomes = [a["outcome"] for a in RunFolder(tmp_path).attempts()]
    assert outcomes == ["started", "started", "failed", "started", "failed", "started", "interrupted", "started",
                        "failed"]  # fmt: skip


def listing(folder):
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def refuse(message):
    def job():
        raise ValueError(message)

    return job


def test_a_refused_start_leaves_a_run_as_it_was_and_a_finished_run_stays_done(tmp_path):
    """Refused before its attempt began: a new folder keeps the refusal (and the config) for a sweep's report; a
    folder that holds a run is left byte for byte. Once done, a later failed or interrupted attempt is logged beside
    the status, which stays done."""
    fresh = tmp_path / "fresh"
    config = lambda: RunFolder(fresh).record_config("a: 1\n")  # noqa: E731
    with pytest.raises(SystemExit):
        run_guarded(refuse("os=12 is not supported"), Attempt(RunFolder(fresh), config), (ValueError,))
    assert state(fresh)["state"] == "failed" and state(fresh)["reason"] == "os=12 is not supported"
    assert RunFolder(fresh).config.read_text() == "a: 1\n"

    run = tmp_path / "run"
    done = begun(run, 0)
    done.iteration = 9
    done.end("done")
    RunFolder(run).record_config("a: 1\n")
    before = listing(run)
    with pytest.raises(SystemExit):
        run_guarded(refuse("refused"), Attempt(RunFolder(run), config), (ValueError,))
    assert listing(run) == before
    with pytest.raises(SystemExit):
        run_guarded(refuse("later"), begun(run, 9), (ValueError,))
    with pytest.raises(KeyboardInterrupt):
        run_guarded(lambda: (_ for _ in ()).throw(KeyboardInterrupt()), begun(run, 9), (ValueError,))
    assert state(run)["state"] == "done" and state(run)["iteration"] == 9
    attempts = RunFolder(run).attempts()
    assert [a["outcome"] for a in attempts][-4:] == ["started", "failed", "started", "interrupted"]
    assert attempts[-3]["reason"] == "later"


def exit_status(job, folder) -> int:
    """The status a guarded ``job`` exits with (it must exit), the SIGTERM flag cleared after it."""
    try:
        with pytest.raises(SystemExit) as ended:
            run_guarded(job, begun(folder), (ValueError,))
    finally:
        Terminated.received = False
    return ended.value.code


def test_sigterm_unwinds_the_job_and_exits_with_143(tmp_path):
    def job():
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("SIGTERM did not interrupt the job")

    assert exit_status(job, tmp_path) == 128 + signal.SIGTERM
    assert state(tmp_path)["state"] == "interrupted" and "SIGTERM" in state(tmp_path)["reason"]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is gone after the run


def test_sigterm_inside_a_reader_is_an_interruption_not_its_failure(tmp_path):
    """A reader that catches every exception (a mask decoder) turns the SIGTERM into its own error: still a stop."""

    def job():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
        except Exception as exc:  # noqa: BLE001 - what a reader does
            raise ValueError(f"x.png: unreadable mask ({exc})") from exc
        raise AssertionError("SIGTERM did not interrupt the job")

    assert exit_status(job, tmp_path) == 128 + signal.SIGTERM and state(tmp_path)["state"] == "interrupted"
