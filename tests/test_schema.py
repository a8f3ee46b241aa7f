"""The one typed schema (config/schema.py): a wrong type or an unknown key fails when Hydra composes, naming the key;
the resume identity is the schema's same_run fields, each of which refuses a resume when changed while every other
setting leaves it allowed; a run is planned once without rewriting the composed config."""

import copy
import subprocess
import sys

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf
from omegaconf.errors import ReadonlyConfigError

from deeplab_mobile.config import schema
from deeplab_mobile.config.plan import plan_run
from deeplab_mobile.config.run import identity
from deeplab_mobile.engine.run import ConfigMismatch, SettingError, check_same_run, flatten
from tests.helpers import FOLDER_CLASSES, composed, write_folder_dataset

APPS = ["train", "eval", "export", "quantize", "complexity", "check_data"]


@pytest.mark.parametrize(
    "app, override, key",
    [
        ("train", "trainer.iters=many", "trainer.iters"),
        ("train", "data.crop_size=big", "data.crop_size"),
        ("train", "eval.mf=perhaps", "eval.mf"),
        ("train", "os=sixteen", "os"),
        ("train", "optim.lr=fast", "optim.lr"),
        ("train", "head=no_aspp", None),  # a choice: composes
        ("eval", "eval.batch_size=two", "eval.batch_size"),
        ("export", "opset=latest", "opset"),
        ("quantize", "calibration.images=all", "calibration.images"),
        ("complexity", "input_size=large", "input_size"),
        ("check_data", "progress=loud", "progress"),
    ],
)
def test_a_wrong_type_fails_at_composition_naming_the_key(app, override, key):
    if key is None:
        composed(app, [override])
        return
    with pytest.raises(ConfigCompositionException) as caught:
        composed(app, [override])
    assert key in str(caught.value) + str(caught.value.__cause__)


@pytest.mark.parametrize("app", APPS)
@pytest.mark.parametrize("key", ["bogus", "data.bogus", "eval.bogus", "trainer.bogus"])
def test_an_unknown_key_fails_at_composition(app, key):
    node = key.split(".")[0]
    cfg = composed(app)
    if "." in key and node not in cfg:
        return  # the app has no such node
    with pytest.raises(ConfigCompositionException) as caught:
        composed(app, [f"{key}=1"])
    assert key.split(".")[-1] in str(caught.value) + str(caught.value.__cause__)


IDENTITY = {  # what a resume must match: the settings that decide the weights a run ends with
    "model",
    "loss",
    "os",
    "width",
    "tap",
    "num_classes",
    "encoder_weights",
    "weights",
    "data.name",
    "data.train_split",
    "data.crop_size",
    "data.scales",
    "data.batch_size",
    "optim",
    "sched",
    "trainer.iters",
    "trainer.seed",
    "trainer.amp",
    "trainer.freeze_bn",
    "trainer.sync_bn",
    "trainer.decay_depthwise",
    "trainer.final_stage",
}


def test_the_identity_is_the_schemas_same_run_fields():
    assert set(schema.run_identity_keys()) == IDENTITY


def changed(value):
    """Another value of the same type."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 1
    if isinstance(value, str):
        return value + "x"
    if isinstance(value, list):
        return [*value, value[-1]] if value else [1]
    return "other" if value is None else None


def leaves(cfg) -> dict:
    return flatten(OmegaConf.to_container(cfg, resolve=False))


# read by the model's encoder and head nodes (${bn}, ${geometry}): they refuse a resume through model
THROUGH_MODEL = {"bn", "geometry"}
CFG = ["recipe=cpu_synthetic", "head=no_aspp", "width=0.5", "loss=hard_pixels"]


@pytest.mark.parametrize("key", sorted(k for k in leaves(composed("train", CFG)) if not k.startswith("hydra")))
def test_each_setting_refuses_a_resume_exactly_when_it_is_identity(key):
    cfg = composed("train", CFG)
    saved = identity(cfg)
    other = copy.deepcopy(cfg)
    value = OmegaConf.select(other, key)
    value = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
    if isinstance(value, str) and value.startswith("${"):
        return  # an interpolation: the key it follows is checked itself
    if key == "trainer.final_stage.lr":
        new = 0.002
    elif key == "trainer.final_stage.os":
        new = 16
    elif key == "data.generate.rare":
        new = schema.Rare(classes=[3], keep=0.1)  # OmegaConf 2.3 takes no dict into a null typed node
    else:
        new = changed(value)
    try:
        OmegaConf.update(other, key, new, merge=False)
    except Exception:  # noqa: BLE001 - a typed node that takes no other value of this kind
        OmegaConf.update(other, key, None if value is not None else 1, merge=False)
    now = OmegaConf.select(other, key)
    assert (OmegaConf.to_container(now) if OmegaConf.is_config(now) else now) != value
    identity_field = key in THROUGH_MODEL or any(key == k or key.startswith(f"{k}.") for k in IDENTITY)
    if identity_field:
        with pytest.raises(ConfigMismatch, match=key.split(".")[0]):
            check_same_run(saved, identity(other), "last.pt")
    else:
        check_same_run(saved, identity(other), "last.pt")


def test_the_plan_resolves_without_rewriting_the_config(tmp_path):
    root = tmp_path / "data"
    write_folder_dataset(root)
    cfg = composed("train", ["recipe=cpu_synthetic", "data=folder", f"data.root={root}"])
    before = OmegaConf.to_yaml(cfg)
    plan = plan_run(cfg, tmp_path / "run")
    assert OmegaConf.to_yaml(cfg) == before  # nothing rewrote the composed config
    assert cfg.num_classes == 21 and plan.config.num_classes == 5
    assert plan.names == tuple(FOLDER_CLASSES) and list(plan.config.data.classes) == list(plan.names)
    assert plan.identity["num_classes"] == 5 and plan.identity["model.head.num_classes"] == 5
    with pytest.raises(ReadonlyConfigError):
        plan.config.trainer.iters = 1


@pytest.mark.parametrize(
    "app, key",
    [("train", "trainer.bogus"), *((a, "bogus") for a in ("eval", "export", "quantize", "complexity", "check_data"))],
)
def test_every_app_refuses_a_key_forced_in_with_plus(app, key):
    """Hydra's +key=value adds a key past the schema: config.schema.conform (cli runs it before every configured
    command) names it."""
    cfg = composed(app, [f"+{key}=1"])
    with pytest.raises(SettingError, match=f"{key}: Key 'bogus' not in"):
        schema.conform(cfg, schema.APPS[f"{app}_schema"])
    schema.conform(composed(app), schema.APPS[f"{app}_schema"])  # without it: nothing to refuse


def test_the_command_line_refuses_it_before_training(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "deeplab_mobile",
            "train",
            "recipe=cpu_synthetic",
            "+trainer.bogus=1",
            "hydra.run.dir=out",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 1 and "trainer.bogus: Key 'bogus' not in 'TrainSettings'" in proc.stdout + proc.stderr
    assert not (tmp_path / "out" / "checkpoints").exists()
