"""The wheel a user installs: it carries every config of conf/ (as deeplab_mobile/conf), and installed outside the
checkout it reads them from there: a configured command composes and runs from an empty folder. (CI also trains,
evaluates and predicts with the installed wheel: .ci/wheel-check.)"""

import os
import subprocess
import sys
import zipfile

import pytest

from tests.helpers import ROOT

pytestmark = pytest.mark.slow  # builds the wheel


def test_the_wheel_carries_every_config_and_a_configured_command_runs_from_any_folder(tmp_path):
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path / "dist"), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("deeplab_mobile-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    configs = {
        f"deeplab_mobile/conf/{p.relative_to(ROOT / 'conf').as_posix()}" for p in (ROOT / "conf").rglob("*.yaml")
    }
    assert configs and configs <= names
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(tmp_path / "site"), str(wheel)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert installed.returncode == 0, installed.stderr[-2000:]
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    where = subprocess.run(
        [sys.executable, "-c", "import deeplab_mobile.config.paths as p; print(p.__file__); print(p.config_dir())"],
        cwd=empty,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert all(w.startswith(str(tmp_path / "site")) for w in where), where
    done = subprocess.run(
        [sys.executable, "-m", "deeplab_mobile", "complexity", "head=no_aspp", "width=0.35", "hydra.run.dir=out"],
        cwd=empty,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-2000:]
    assert any((empty / "out").iterdir())
