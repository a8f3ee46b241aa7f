"""Import the command-line scripts (scripts/ is not a package) so tests can call their ``main``."""

import importlib.util
import sys
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
sys.path.insert(0, str(SCRIPTS))  # as when a script runs: its helpers (run_folder.py) import by name


def _load(name):
    spec = importlib.util.spec_from_file_location(f"scripts_{name}", SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


prepare_voc = _load("prepare_voc")
train = _load("train")
evaluate = _load("eval")
ablation_table = _load("ablation_table")
export = _load("export")
benchmark = _load("benchmark")
