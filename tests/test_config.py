"""Hydra configs: composition, overrides as the README writes them, refusal of unsupported values."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import InstantiationException
from hydra.utils import instantiate

from deeplab_mobile.complexity import count_madds, count_params

ROOT = Path(__file__).resolve().parents[1]
CONF = str(ROOT / "conf")


def composed(name, overrides):
    with initialize_config_dir(version_base="1.3", config_dir=CONF):
        return compose(name, overrides=overrides)


@pytest.mark.parametrize(
    "overrides,encoder,rates",
    [
        (["head=no_aspp", "os=16"], "MobileNetV2Encoder", ()),
        (["head=aspp", "os=8", "width=0.5"], "MobileNetV2Encoder", (12, 24, 36)),
        (["encoder=mobilenet_v1", "os=32", "width=0.25"], "MobileNetV1Encoder", (3, 6, 9)),
    ],
)
def test_overrides_compose_and_instantiate(overrides, encoder, rates):
    model = instantiate(composed("complexity", overrides).model)
    assert type(model.encoder).__name__ == encoder
    assert model.head.rates == rates
    assert model.output_stride == int(next(o for o in overrides if o.startswith("os=")).split("=")[1])


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["os=12"], "output stride 12 is not supported"),
        (["encoder=resnet101", "width=0.5"], "no width multiplier"),
        (["tap=middle"], "tap 'middle' is not supported"),
    ],
)
def test_unsupported_values_are_refused(overrides, message):
    with pytest.raises(InstantiationException, match=message):
        instantiate(composed("complexity", overrides).model)


def test_complexity_script_writes_json(tmp_path):
    # encoder_weights names a file that does not exist: counting must not need it.
    cmd = [sys.executable, str(ROOT / "scripts/complexity.py"), "head=no_aspp", "os=16", "width=0.5"]
    cmd.append(f"encoder_weights={tmp_path / 'absent.pth'}")
    cmd.append(f"hydra.run.dir={tmp_path}")
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "complexity.json").read_text())
    model = instantiate(composed("complexity", ["head=no_aspp", "os=16", "width=0.5"]).model)
    assert result["params"] == count_params(model)
    assert result["madds"] == count_madds(model, 513)
    assert f"Params {result['params'] / 1e6:.3f}M" in proc.stdout


def test_package_imports_no_hydra():
    code = (
        "import sys, deeplab_mobile.models, deeplab_mobile.data, deeplab_mobile.data.prepare, "
        "deeplab_mobile.data.synthetic, deeplab_mobile.data.loader, deeplab_mobile.complexity, "
        "deeplab_mobile.table7, deeplab_mobile.metrics; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('hydra', 'omegaconf')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
