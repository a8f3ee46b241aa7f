"""The one entry point: every command line reports a project error as its message and exit status 1, keeps the
traceback for a bug, and the console command, ``python -m deeplab_mobile`` and scripts/*.py run the same code."""

import subprocess
import sys
from pathlib import Path

import pytest
from hydra.errors import CompactHydraException
from PIL import Image

from deeplab_mobile import cli
from deeplab_mobile.config.sweeps import JobFailed
from deeplab_mobile.errors import MissingFile
from tests.helpers import ROOT


def run(*args, cwd=ROOT):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_every_script_is_a_command_and_the_console_entry_is_declared():
    scripts = {p.stem.replace("_", "-") for p in (ROOT / "scripts").glob("*.py")} - {"code-metrics"}
    assert scripts == set(cli.COMMANDS)
    for path in (ROOT / "scripts").glob("*.py"):
        if path.stem != "code_metrics":
            assert f'script("{path.stem.replace("_", "-")}")' in path.read_text(), path
    pyproject = (ROOT / "pyproject.toml").read_text()  # (tomllib is Python 3.11+; the package runs on 3.10)
    assert '[project.scripts]\ndeeplab-mobile = "deeplab_mobile.cli:main"\n' in pyproject
    for command in cli.COMMANDS.values():
        assert callable(command.function())
        if command.config:
            assert (cli.config_dir() / f"{command.config}.yaml").is_file()


def test_a_project_error_is_a_message_and_status_1(capsys):
    with pytest.raises(SystemExit) as ended, cli.reported():
        raise MissingFile("photo.jpg: not found")
    assert ended.value.code == 1
    assert capsys.readouterr().err == "error: photo.jpg: not found\n"
    with pytest.raises(JobFailed, match="^x$"), cli.reported(sweep=True):  # a sweep's job: Hydra records it,
        raise MissingFile("x")  # and prints the message alone (a compact Hydra error: no traceback)
    assert issubclass(JobFailed, CompactHydraException)
    with pytest.raises(RuntimeError), cli.reported():  # a bug keeps its traceback
        raise RuntimeError("a bug")


def test_unknown_command_and_usage(capsys):
    assert cli.main(["nope"]) == 2 and "unknown command 'nope'" in capsys.readouterr().err
    assert cli.main(["--help"]) == 0 and "check-data" in capsys.readouterr().out


@pytest.mark.slow
def test_configured_and_file_commands_end_alike(tmp_path):
    """A missing model file: the configured command (eval) and the file command (predict) both print one line and
    exit with 1, without a traceback; scripts/eval.py says the same."""
    missing = tmp_path / "none.pt"
    Image.new("RGB", (8, 8)).save(tmp_path / "photo.png")  # something to segment: the missing model is the problem
    for args in (
        ["-m", "deeplab_mobile", "eval", f"weights={missing}", f"out_dir={tmp_path / 'e'}"],
        ["scripts/eval.py", f"weights={missing}", f"out_dir={tmp_path / 'e'}"],
        ["-m", "deeplab_mobile", "predict", str(tmp_path), "--weights", str(missing)],
    ):
        proc = run(*args)
        output = proc.stdout + proc.stderr  # Hydra's console log is stdout
        assert proc.returncode == 1, (args, output[-2000:])
        assert "model file not found" in output and "Traceback" not in output, args


@pytest.mark.slow
def test_a_configured_command_logs_under_its_own_name(tmp_path):
    """``deeplab-mobile complexity`` is ``scripts/complexity.py``: its results and its log (complexity.log) in the
    Hydra output folder, whichever starts it."""
    out = tmp_path / "c"
    proc = run("-m", "deeplab_mobile", "complexity", "head=no_aspp", "width=0.35", f"hydra.run.dir={out}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (out / "complexity.json").is_file() and (out / "complexity.log").is_file()
    assert "MNet V2* x0.35 no_aspp OS16" in proc.stdout


def test_the_console_command_is_installed_and_lists_the_commands():
    """``pip install -e .`` (the README's set-up, CI's) puts ``deeplab-mobile`` beside the interpreter."""
    command = Path(sys.executable).parent / "deeplab-mobile"
    proc = subprocess.run([str(command), "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and all(name in proc.stdout for name in cli.COMMANDS)


def test_the_configs_are_found_beside_the_package_when_no_checkout_is(tmp_path):
    """A wheel installs conf/ as deeplab_mobile/conf; with no checkout's conf/ beside the package, that is read."""
    import shutil

    from deeplab_mobile.config import paths

    package = tmp_path / "site" / "deeplab_mobile"
    shutil.copytree(ROOT / "conf", package / "conf")
    (package / "config").mkdir()
    fake = package / "config" / "paths.py"
    assert paths.config_dir() == ROOT / "conf"  # this checkout
    real = paths.__file__
    try:
        paths.__file__ = str(fake)
        assert paths.config_dir() == package / "conf"
    finally:
        paths.__file__ = real
