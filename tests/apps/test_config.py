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


def test_train_config_defaults_to_the_official_voc_recipe():
    # SPEC section 3: crop 513, batch 16, 30,000 iterations, LR 0.007 poly 0.9, momentum 0.9, weight decay 4e-5.
    cfg = composed("train", ["head=no_aspp", "os=16"])
    assert (cfg.data.name, cfg.data.train_split, cfg.data.val_split) == ("voc", "train_aug", "val")
    assert (cfg.data.crop_size, cfg.data.batch_size, cfg.trainer.iters) == (513, 16, 30000)
    assert (cfg.optim.lr, cfg.optim.momentum, cfg.optim.weight_decay) == (0.007, 0.9, 4e-5)
    assert (cfg.sched.power, cfg.sched.total_iters) == (0.9, 30000)
    assert list(cfg.data.scales) == [0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0]
    assert list(cfg.eval.mf_scales) == [0.5, 0.75, 1.0, 1.25, 1.5, 1.75] and cfg.eval.flip
    assert cfg.eval.pad_to == 513
    model = instantiate(cfg.model)
    assert model.head.rates == () and model.output_stride == 16


def test_synthetic_data_carries_its_own_recipe_and_the_command_line_still_wins():
    cfg = composed("train", ["data=synthetic"])
    assert cfg.data.name == "synthetic" and cfg.trainer.iters < 30000
    assert composed("train", ["data=synthetic", "trainer.iters=7"]).trainer.iters == 7
    assert composed("train", ["data=synthetic", "optim.lr=0.2"]).optim.lr == 0.2
    assert list(composed("train", ["data=synthetic", "eval.mf_scales=[1.0]"]).eval.mf_scales) == [1.0]


def test_unsupported_values_are_refused_by_the_train_config():
    with pytest.raises(InstantiationException, match="output stride 12 is not supported"):
        instantiate(composed("train", ["os=12"]).model)
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException):
        composed("train", ["head=no_such_head"])
