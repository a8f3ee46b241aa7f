"""The core install without its extras: training, evaluation and the ablation report run with the deploy, sweep
and test packages unimportable, and each feature that needs an extra says which, in one line."""

import subprocess
import sys

import pytest

from deeplab_mobile.config.sweeps import require_launcher
from deeplab_mobile.extras import EXTRAS, MissingExtra, require
from tests.helpers import ROOT

pytestmark = pytest.mark.slow

# Every package an extra brings that the core must not need, and the test oracles
BLOCKED = (
    "onnx",
    "onnxscript",
    "onnxruntime",
    "torchao",
    "executorch",
    "litert_torch",
    "ai_edge_litert",
    "openvino",
    "submitit",
    "transformers",
    "tensorflow",
)

PRELUDE = f"""
import runpy, sys
for name in {BLOCKED!r}:
    sys.modules[name] = None  # as if not installed: importing it fails, importlib.util.find_spec finds nothing
script, *sys.argv[1:] = sys.argv[1:]
sys.argv[0] = script
runpy.run_path(script, run_name="__main__")
"""


def run(script, *args):
    cmd = [sys.executable, "-c", PRELUDE, str(ROOT / "scripts" / script), *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_training_evaluation_and_the_report_need_no_extra(synthetic_voc, tmp_path):
    run_dir = tmp_path / "run"
    proc = run(
        "train.py",
        "recipe=cpu_synthetic",
        f"data.root={synthetic_voc}",
        "data.generate=null",
        "width=0.35",
        "head=no_aspp",
        "data.crop_size=65",
        "data.batch_size=4",
        "data.workers=0",
        "trainer.iters=2",
        "trainer.eval_every=0",
        "trainer.final_stage=null",
        "eval.mf=false",
        "eval.workers=0",
        "progress=false",
        f"hydra.run.dir={run_dir}",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (run_dir / "metrics.json").is_file() and (run_dir / "per_image_confusion.npz").is_file()
    proc = run("eval.py", f"run_dir={run_dir}", "split=val", "eval.mf=false", "eval.workers=0", "progress=false")
    assert proc.returncode == 0, proc.stderr[-2000:]
    proc = run("ablation_table.py", str(run_dir))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (run_dir / "report" / "table.md").is_file()
    # a feature that needs the deploy extra names it, in one line
    proc = run("export.py", f"run_dir={run_dir}")
    assert proc.returncode == 1
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if "ERROR" in line or "Traceback" in line]
    assert len(lines) == 1 and lines[0].endswith(
        "needs onnx, which is not installed: pip install 'deeplab-mobile[deploy]'"
    )


def test_a_missing_extra_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as it does when not installed
    with pytest.raises(MissingExtra, match=r"^INT8 needs onnxruntime, which is not installed: .*\[deploy\]'$"):
        require("INT8", "onnxruntime")
    monkeypatch.setitem(sys.modules, "hydra_plugins.hydra_joblib_launcher", None)
    with pytest.raises(MissingExtra, match=r"hydra/launcher=parallel needs hydra-joblib-launcher.*\[sweep\]'$"):
        require_launcher(["-m", "hydra/launcher=parallel", "experiment=head_os"])
    require_launcher(["-m", "experiment=head_os"])  # the default launcher needs nothing
    assert set(BLOCKED) - {"transformers", "tensorflow"} <= {m.split(".")[0] for m in EXTRAS}
