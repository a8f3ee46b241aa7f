"""Encoder weights: local torchvision/SMP/timm files load; bad files and offline 'imagenet' fail clearly."""

import socket
import time

import pytest
import timm
import torch
from safetensors.torch import save_file
from torchvision.models import mobilenet_v2

from deeplab_mobile.models.encoders import MobileNetV1Encoder, MobileNetV2Encoder
from deeplab_mobile.models.weights import WeightsError, host_reachable


def test_torchvision_state_dict_loads(tmp_path):
    ref = mobilenet_v2()
    path = tmp_path / "mnv2.pth"
    torch.save(ref.state_dict(), path)
    enc = MobileNetV2Encoder(output_stride=16, weights=path)
    assert torch.equal(enc.features[17].conv[0][0].weight, ref.features[17].conv[0][0].weight)
    assert torch.equal(enc.features[3].conv[-1].weight, ref.features[3].conv[-1].weight)  # not the zero init
    last = MobileNetV2Encoder(tap="last", weights=path)
    assert torch.equal(last.features[18][0].weight, ref.features[18][0].weight)


def test_smp_style_prefixed_state_dict_loads(tmp_path):
    ref = mobilenet_v2()
    state = {f"encoder.{k}": v for k, v in ref.state_dict().items() if not k.startswith("classifier")}
    path = tmp_path / "smp.safetensors"
    save_file(state, str(path))
    enc = MobileNetV2Encoder(weights=path)
    assert torch.equal(enc.features[0][0].weight, ref.features[0][0].weight)


def test_timm_state_dict_loads_into_mobilenet_v1(tmp_path):
    ref = timm.create_model("mobilenetv1_100")
    path = tmp_path / "v1.pth"
    torch.save({"state_dict": ref.state_dict()}, path)
    enc = MobileNetV1Encoder(weights=path)
    assert torch.equal(enc.blocks[4][1].conv_pw.weight, ref.blocks[4][1].conv_pw.weight)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(WeightsError, match="nope.pth: weights file not found"):
        MobileNetV2Encoder(weights=tmp_path / "nope.pth")


def test_unreadable_file_is_named(tmp_path):
    path = tmp_path / "garbage.pth"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="garbage.pth: not a readable weights file"):
        MobileNetV2Encoder(weights=path)


def test_wrong_architecture_is_reported(tmp_path):
    path = tmp_path / "half.pth"
    torch.save(mobilenet_v2(width_mult=0.5).state_dict(), path)
    with pytest.raises(WeightsError, match="half.pth: does not fit MobileNetV2Encoder: .*shape mismatches"):
        MobileNetV2Encoder(weights=path)


def test_offline_imagenet_fails_fast_with_advice(monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("Network is unreachable")

    monkeypatch.setattr(socket, "create_connection", offline)
    start = time.monotonic()
    with pytest.raises(WeightsError, match="cannot be reached.*encoder_weights=/path/to"):
        MobileNetV2Encoder(weights="imagenet")
    assert time.monotonic() - start < 5


def test_probe_returns_false_on_closed_port():
    with socket.socket() as s:  # find a free loopback port, then close it: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert host_reachable("127.0.0.1", port, timeout=1.0) is False


def test_imagenet_for_other_widths_is_refused():
    with pytest.raises(WeightsError, match="no ImageNet weights for this configuration"):
        MobileNetV2Encoder(width=0.5, weights="imagenet")
