"""Hydra configs: composition, overrides as the README writes them, refusal of unsupported values."""

import json
import subprocess
import sys

import pytest
import torch
from hydra.errors import ConfigCompositionException, InstantiationException
from hydra.utils import instantiate
from omegaconf import OmegaConf

from deeplab_mobile import table7
from deeplab_mobile.complexity import count_madds, count_params
from deeplab_mobile.config.model import build_model, class_names
from deeplab_mobile.data.synthetic import CLASS_NAMES
from deeplab_mobile.data.voc import CLASSES
from deeplab_mobile.models import describe_model
from tests.helpers import CONF, ROOT, composed


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


@pytest.mark.slow
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


@pytest.mark.slow
def test_the_core_imports_no_hydra():
    """Only the apps and the sweep report (which reads Hydra's folders) use Hydra; the rest takes plain values."""
    code = (
        "import sys, deeplab_mobile.models, deeplab_mobile.data, deeplab_mobile.data.prepare, "
        "deeplab_mobile.data.synthetic, deeplab_mobile.data.loader, deeplab_mobile.complexity, "
        "deeplab_mobile.table7, deeplab_mobile.metrics, deeplab_mobile.bench.latency, deeplab_mobile.deploy, "
        "deeplab_mobile.engine.trainer, deeplab_mobile.engine.evaluator, deeplab_mobile.engine.run, "
        "deeplab_mobile.engine.board, deeplab_mobile.engine.report, deeplab_mobile.source, deeplab_mobile.predict; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('hydra', 'omegaconf')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_train_config_defaults_to_the_official_voc_recipe():
    # DeepLab's VOC recipe (docs/protocol.md, section 4): crop 513, batch 16, 30,000 iterations, LR 0.007 poly 0.9,
    # momentum 0.9, weight decay 4e-5.
    cfg = composed("train", ["head=no_aspp", "os=16"])
    assert (cfg.data.name, cfg.data.train_split, cfg.data.val_split) == ("voc", "train_aug", "val")
    assert (cfg.data.crop_size, cfg.data.batch_size, cfg.trainer.iters) == (513, 16, 30000)
    assert cfg.optim._target_ == "torch.optim.SGD"
    assert (cfg.optim.lr, cfg.optim.momentum, cfg.optim.weight_decay) == (0.007, 0.9, 4e-5)
    assert (cfg.sched.power, cfg.sched.total_iters) == (0.9, 30000)
    assert list(cfg.data.scales) == [0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0]
    assert list(cfg.eval.mf_scales) == [0.5, 0.75, 1.0, 1.25, 1.5, 1.75] and cfg.eval.flip
    assert cfg.eval.pad_to == 513 and cfg.eval.os is None and cfg.trainer.final_stage is None
    # docs/protocol.md, sections 4 and 6: pretrained networks, no decay on depthwise kernels, DeepLab's BatchNorm
    assert cfg.encoder_weights == "imagenet" and cfg.trainer.decay_depthwise is False
    assert cfg.model.encoder.bn == cfg.model.head.bn == "deeplab"
    model = build_model(cfg.model, weights=False)
    assert model.head.rates == () and model.output_stride == 16
    assert class_names(cfg) == CLASSES
    bn = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert all(m.momentum == pytest.approx(3e-4) for m in bn)
    assert {m.eps for m in model.encoder.modules() if m in bn} == {1e-3}
    assert {m.eps for m in model.head.modules() if m in bn} == {1e-5}


def test_the_cpu_recipe_picks_the_generated_data_and_the_command_line_still_wins():
    cfg = composed("train", ["recipe=cpu_synthetic", "head=no_aspp", "width=0.5"])
    assert (cfg.data.name, cfg.data.crop_size, cfg.optim._target_) == ("synthetic", 129, "torch.optim.AdamW")
    assert cfg.encoder_weights == "random" and cfg.model.encoder.bn == "torch" and cfg.trainer.decay_depthwise
    assert cfg.trainer.iters < 30000 and cfg.trainer.final_stage.os == 8 and cfg.eval.os == 8
    assert class_names(cfg) == CLASS_NAMES
    assert composed("train", ["recipe=cpu_synthetic", "trainer.iters=7"]).trainer.iters == 7
    assert composed("train", ["recipe=cpu_synthetic", "optim.lr=0.2"]).optim.lr == 0.2
    assert list(composed("train", ["recipe=cpu_synthetic", "eval.mf_scales=[1.0]"]).eval.mf_scales) == [1.0]
    assert composed("train", ["recipe=cpu_synthetic", "trainer.final_stage=null"]).trainer.final_stage is None


def test_data_configs_describe_data_only():
    """The training and evaluation settings come from the recipe: a data config sets none of them."""
    allowed = {
        "name",
        "format",
        "root",
        "train_split",
        "val_split",
        "classes",
        "generate",
        "random_init_cost",
        "help",
        "images",
        "masks",
        "classes_file",
    }
    for path in (CONF / "data").glob("*.yaml"):
        node = OmegaConf.load(path)
        if path.read_text().startswith("# @package _global_"):  # a dataset that fixes the class count too
            assert set(node) <= {"data", "num_classes"}, path.name
            node = node.data
        assert set(node) <= allowed, path.name


def test_variants_are_the_table7_networks_and_set_only_the_network():
    """conf/variant/ holds exactly deeplab_mobile.table7's networks: each composes to its row's encoder, tap,
    head, stride and width, and sets nothing else."""
    variants = {p.stem: p for p in (CONF / "variant").glob("*.yaml")}
    assert set(variants) == {row.variant for row in table7.TABLE7}
    for row in table7.TABLE7:
        assert set(OmegaConf.load(variants[row.variant])) <= {"defaults", "os", "width", "tap"}
        cfg = composed("train", [f"variant={row.variant}"])
        with torch.device("meta"):
            arch = describe_model(build_model(cfg.model, weights=False))
        assert (arch["encoder"], arch["tap"], arch["head"], arch["os"], arch["width"]) == (
            row.encoder,
            row.tap,
            row.head,
            row.os,
            1.0,
        )
        assert arch["network"] == row.network


def test_the_evaluation_config_holds_the_papers_mf_scales():
    assert tuple(composed("train").eval.mf_scales) == table7.MF_SCALES


def test_unsupported_values_are_refused_by_the_train_config():
    with pytest.raises(InstantiationException, match="output stride 12 is not supported"):
        instantiate(composed("train", ["os=12", "encoder_weights=random"]).model)
    with pytest.raises(ConfigCompositionException):
        composed("train", ["head=no_such_head"])


def test_seeds_add_a_seed_axis_to_any_sweep():
    """seeds=3 sweeps trainer.seed over 0, 1, 2 beside an experiment's own grid; one run refuses it, and a seed
    outside that range given beside it."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from deeplab_mobile.apps.train import check_seeds
    from deeplab_mobile.engine.run import SettingError

    cfg = composed("train", ["experiment=head_os", "seeds=3"], return_hydra_config=True)
    params = OmegaConf.to_container(cfg.hydra.sweeper.params, resolve=True)
    assert params == {"trainer.seed": "range(3)", "head": "aspp,no_aspp", "os": "16,8"}
    (seed,) = OverridesParser.create().parse_overrides([f"trainer.seed={params['trainer.seed']}"])
    assert list(seed.sweep_iterator()) == [0, 1, 2]
    check_seeds(composed("train", ["seeds=3", "trainer.seed=2"]), sweep=True)
    with pytest.raises(SettingError, match="seeds=3 runs every setting with trainer.seed 0..2 in a sweep: add -m"):
        check_seeds(composed("train", ["seeds=3"]), sweep=False)
    with pytest.raises(SettingError, match="trainer.seed=5 was given too"):
        check_seeds(composed("train", ["seeds=3", "trainer.seed=5"]), sweep=True)
    with pytest.raises(SettingError, match="seeds must be at least 1"):
        check_seeds(composed("train", ["seeds=0"]), sweep=True)
