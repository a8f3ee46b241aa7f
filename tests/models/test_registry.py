"""Architecture as data: the schema's head and encoder options (config/schema.py) against the registries they name,
and the model a config composes against the one ``build_model`` builds by names."""

import inspect

import pytest
import torch
from omegaconf import OmegaConf

from deeplab_mobile.config import schema
from deeplab_mobile.config.model import build_model as build_from_config
from deeplab_mobile.models import ENCODERS, HEADS, build_model
from deeplab_mobile.models.build import SUPPLIED
from tests.helpers import composed


def config(group: str, name: str) -> dict:
    """The option as the schema registers it, interpolations as written."""
    return OmegaConf.to_container(OmegaConf.structured(schema.GROUPS[group][1][name]), resolve=False)


def test_every_head_config_names_a_registered_head_and_its_defaults():
    assert sorted(schema.options("head")) == sorted(HEADS)
    for name, spec in HEADS.items():
        node = config("head", name)
        assert node.pop("_target_") == spec.target and node.pop("_partial_") is True, name
        assert node.pop("num_classes") == "${num_classes}" and node.pop("bn") == "${bn}", name
        assert node == spec.defaults(), name  # the same keys, the same values


def test_head_defaults_are_the_class_signatures():
    """Computed here from the signature independently of HeadSpec: rates 6/12/18, 256 channels, dropout 0.1."""
    signature = inspect.signature(HEADS["aspp"].cls.__init__).parameters
    assert list(signature["rates"].default) == [6, 12, 18] and signature["channels"].default == 256
    assert HEADS["aspp"].defaults()["rates"] == [6, 12, 18] and HEADS["aspp"].defaults()["dropout"] == 0.1
    assert HEADS["no_aspp"].defaults()["aspp"] is False and HEADS["deeplabv3plus"].defaults()["separable"] is True
    assert not set(SUPPLIED) & set(HEADS["lraspp"].defaults())


def test_every_encoder_config_names_a_registered_encoder_and_its_arguments():
    assert sorted(schema.options("encoder")) == sorted(ENCODERS)
    for name, cls in ENCODERS.items():
        node = config("encoder", name)
        assert node.pop("_target_") == f"deeplab_mobile.models.encoders.{cls.__name__}", name
        params = set(inspect.signature(cls.__init__).parameters) | set(cls.options)
        assert set(node) <= params, (name, set(node) - params)
        assert cls.name == name and cls.family and cls.widths


@pytest.mark.parametrize("head", sorted(HEADS))
def test_a_composed_config_builds_what_build_model_builds(head):
    """The one builder: Hydra's model node (conf/model.yaml -> build_model with the instantiated encoder and head)
    and build_model by names give the same network and the same initial weights."""
    cfg = composed(
        "train", [f"head={head}", "width=0.35", "os=8", "num_classes=5", "bn=deeplab", "encoder_weights=random"]
    )
    torch.manual_seed(0)
    ours = build_from_config(cfg.model)
    torch.manual_seed(0)
    by_name = build_model("mobilenet_v2", head, 8, 0.35, num_classes=5, bn="deeplab", geometry=str(cfg.geometry))
    assert repr(ours) == repr(by_name)
    a, b = ours.state_dict(), by_name.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_encoders_share_one_opening():
    """The base class checks width, tap and output stride for every encoder, with the encoder's own spec."""
    for cls in ENCODERS.values():
        with pytest.raises(ValueError, match=cls.family):
            cls(width=0.123)
        with pytest.raises(ValueError, match="tap"):
            cls(tap="nope")
        with pytest.raises(ValueError, match="output stride"):
            cls(output_stride=12)
        with pytest.raises(ValueError, match="has no setting nope"):
            cls(nope=1)


def test_a_run_recorded_with_the_old_builder_resumes_and_loads():
    """Run folders written when conf/model.yaml named the segmentor class: the same identity (a resume is not
    refused) and the same network."""
    from omegaconf import open_dict

    from deeplab_mobile.config.run import identity

    cfg = composed("train", ["head=no_aspp", "width=0.35", "encoder_weights=random"])
    old = cfg.copy()
    with open_dict(old):
        old.model._target_ = "deeplab_mobile.models.DeepLabV3"
    assert identity(old) == identity(cfg)
    torch.manual_seed(0)
    a = build_from_config(old.model).state_dict()
    torch.manual_seed(0)
    b = build_from_config(cfg.model).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
