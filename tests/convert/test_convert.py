"""Conversion of DeepLab's official checkpoints, checked against an independent implementation: Hugging Face
transformers' ``MobileNetV2ForSemanticSegmentation`` (TensorFlow padding on, random weights and BatchNorm
statistics). Its weights are written in each source format the model zoo uses, with the real variable names and
layouts (spelled out here, not taken from the converter), converted, and the logits compared."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from tensorboard.compat.proto import graph_pb2
from tensorboard.compat.proto.types_pb2 import DT_FLOAT
from tensorboard.util.tensor_util import make_tensor_proto
from transformers import MobileNetV2Config, MobileNetV2ForSemanticSegmentation

from deeplab_mobile.convert import convert_checkpoint
from deeplab_mobile.data.voc import CLASSES
from deeplab_mobile.models import build_model, load_model_file
from deeplab_mobile.models.weights import WeightsError
from tests.convert.tf_bundle import write_checkpoint
from tests.helpers import ROOT

pytestmark = pytest.mark.slow  # Hugging Face's network built and run at 513x513, a subprocess

SIZE = 513
TOL = 1e-4


def hf_model(state, output_stride, width=1.0):
    config = MobileNetV2Config(num_labels=21, output_stride=output_stride, depth_multiplier=width, tf_padding=True)
    model = MobileNetV2ForSemanticSegmentation(config)
    model.load_state_dict(state)
    return model.eval()


def random_state(width=1.0, seed=0):
    """A reference model's weights: He-initialised kernels (the library's own small init leaves the logits nearly
    constant over the image, blind to padding) and BatchNorm statistics and scales far from their defaults, so that
    logits vary over the image at order 1 and a swapped, shifted or mis-transposed tensor shows in them."""
    torch.manual_seed(seed)
    config = MobileNetV2Config(num_labels=21, output_stride=16, depth_multiplier=width, tf_padding=True)
    state = MobileNetV2ForSemanticSegmentation(config).state_dict()
    g = torch.Generator().manual_seed(seed + 1)
    for key, value in state.items():
        if key.endswith("running_mean"):
            value.copy_(torch.randn(value.shape, generator=g) * 0.2)
        elif key.endswith("running_var"):
            value.copy_(torch.rand(value.shape, generator=g) + 0.5)
        elif key.endswith("normalization.weight"):
            value.copy_(torch.rand(value.shape, generator=g) + 0.5)
        elif key.endswith("normalization.bias"):
            value.copy_(torch.randn(value.shape, generator=g) * 0.2)
        elif key.endswith("convolution.weight"):
            value.copy_(torch.randn(value.shape, generator=g) * (2.0 / value[0].numel()) ** 0.5)
        elif key.endswith("convolution.bias"):
            value.copy_(torch.randn(value.shape, generator=g))
    return state


# TensorFlow's names for Hugging Face's modules (the model zoo's checkpoints, docs/protocol.md, section 6).
TF_SCOPES = {
    "mobilenet_v2.conv_stem.first_conv": "MobilenetV2/Conv",
    "mobilenet_v2.conv_stem.conv_3x3": "MobilenetV2/expanded_conv/depthwise",
    "mobilenet_v2.conv_stem.reduce_1x1": "MobilenetV2/expanded_conv/project",
    "segmentation_head.conv_pool": "image_pooling",
    "segmentation_head.conv_aspp": "aspp0",
    "segmentation_head.conv_projection": "concat_projection",
    "segmentation_head.classifier": "logits/semantic",
}
for _i in range(16):
    for _hf, _tf in (("expand_1x1", "expand"), ("conv_3x3", "depthwise"), ("reduce_1x1", "project")):
        TF_SCOPES[f"mobilenet_v2.layer.{_i}.{_hf}"] = f"MobilenetV2/expanded_conv_{_i + 1}/{_tf}"
TF_LEAVES = {
    "normalization.weight": "BatchNorm/gamma",
    "normalization.bias": "BatchNorm/beta",
    "normalization.running_mean": "BatchNorm/moving_mean",
    "normalization.running_var": "BatchNorm/moving_variance",
    "convolution.bias": "biases",
}


def tf_variables(state):
    """The reference weights as the model zoo's TensorFlow variables: names and HWIO / (H, W, C, 1) layouts."""
    out = {}
    for key, value in state.items():
        module, _, leaf = key.rpartition(".")
        module, _, kind = module.rpartition(".")
        if module not in TF_SCOPES:  # the 1280-channel conv DeepLab never builds; BN step counters
            continue
        leaf = f"{kind}.{leaf}"
        if leaf.endswith("num_batches_tracked"):
            continue
        array = value.numpy()
        if leaf == "convolution.weight":
            depthwise = array.shape[1] == 1 and array.shape[2] == 3
            name = "depthwise_weights" if depthwise else "weights"
            array = array.transpose(2, 3, 0, 1) if depthwise else array.transpose(2, 3, 1, 0)
        else:
            name = TF_LEAVES[leaf]
        out[f"{TF_SCOPES[module]}/{name}"] = np.ascontiguousarray(array, dtype=np.float32)
    return out


def write_frozen_graph(variables, path):
    graph = graph_pb2.GraphDef()
    placeholder = graph.node.add(name="ImageTensor", op="Placeholder")
    placeholder.attr["dtype"].type = DT_FLOAT
    for name, array in variables.items():
        node = graph.node.add(name=name, op="Const")
        node.attr["dtype"].type = DT_FLOAT
        node.attr["value"].tensor.CopyFrom(make_tensor_proto(array))
    path.write_bytes(graph.SerializeToString())
    return path


def write_tf_checkpoint(variables, prefix, ema=()):
    """A TF1 checkpoint (``model.ckpt-30000.index`` / ``.data-00000-of-00001``) with these variables, laid out as
    TensorFlow lays it out (``tf_bundle``, held to TensorFlow's own bytes); for names in ``ema`` the true value goes
    to the ``ExponentialMovingAverage`` twin and a wrong one to the variable."""
    out = {"global_step": np.int64(30000)}
    for name, array in variables.items():
        if name in ema:
            out[f"{name}/ExponentialMovingAverage"] = array
            array = array + 1.0
        out[name] = array
    return write_checkpoint(out, prefix.parent / f"{prefix.name}-30000", checksum=False)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    folder = tmp_path_factory.mktemp("reference")
    state = random_state()
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "model.safetensors"))
    x = torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        logits = {os_: hf_model(state, os_)(pixel_values=x).logits for os_ in (8, 16)}
    return {"state": state, "folder": folder, "x": x, "logits": logits}


def assert_matches_reference(model_file, reference):
    for os_ in (8, 16):
        model, _ = load_model_file(model_file, output_stride=os_)
        with torch.no_grad():
            ours = model.eval().logits(reference["x"])
        theirs = reference["logits"][os_]
        assert ours.shape == theirs.shape == (1, 21, (SIZE - 1) // os_ + 1, (SIZE - 1) // os_ + 1)
        assert theirs.std(dim=(2, 3)).mean() > 0.5  # logits that vary over the image at order 1
        assert (ours - theirs).abs().max().item() <= TOL, f"OS{os_}"


def test_huggingface_weights_convert_to_the_same_network(reference, tmp_path):
    out = tmp_path / "mnv2.pt"
    info = convert_checkpoint(reference["folder"] / "model.safetensors", out)
    assert info.config == {
        "encoder": "mobilenet_v2",
        "head": "no_aspp",
        "output_stride": 16,
        "width": 1.0,
        "tap": "second_last",
        "num_classes": 21,
        "bn": "deeplab",
        "geometry": "deeplab",
    }
    assert info.classes == CLASSES
    assert info.mean == info.std == (0.5, 0.5, 0.5)  # (x - 127.5) / 127.5
    assert_matches_reference(out, reference)


def test_a_hugging_face_folder_with_pytorch_model_bin_and_its_class_names(reference, tmp_path):
    folder = tmp_path / "deeplabv3_mobilenet_v2_1.0_513"
    folder.mkdir()
    torch.save(reference["state"], folder / "pytorch_model.bin")
    names = [f"class_{i}" for i in range(21)]
    (folder / "config.json").write_text(json.dumps({"id2label": {str(i): n for i, n in enumerate(names)}}))
    info = convert_checkpoint(folder, tmp_path / "from_bin.pt")
    assert info.classes == tuple(names) and info.source == "huggingface: deeplabv3_mobilenet_v2_1.0_513"
    assert_matches_reference(tmp_path / "from_bin.pt", reference)


def test_tensorflow_padding_and_resizes_are_tensorflows(reference, tmp_path):
    """At an even size TensorFlow's "SAME" padding is not PyTorch's: the reference (tf_padding=True) agrees with
    the converted model, and not with the same weights under PyTorch's geometry. Upsampled logits use
    ``align_corners=True``."""
    out = tmp_path / "mnv2.pt"
    convert_checkpoint(reference["folder"] / "model.safetensors", out)
    model = load_model_file(out)[0].eval()
    plain = build_model(head="no_aspp", bn="deeplab", geometry="torch").eval()
    plain.load_state_dict(model.state_dict())
    x = torch.randn(1, 3, 500, 376, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        theirs = hf_model(reference["state"], 16)(pixel_values=x).logits
        ours = model.logits(x)
        assert (ours - theirs).abs().max().item() <= TOL
        assert (plain.logits(x) - theirs).abs().max().item() > 100 * TOL
        up = model(x)
    expected = torch.nn.functional.interpolate(ours, size=(500, 376), mode="bilinear", align_corners=True)
    torch.testing.assert_close(up, expected)


def test_frozen_graph_converts_to_the_same_network(reference, tmp_path):
    graph = write_frozen_graph(tf_variables(reference["state"]), tmp_path / "frozen_inference_graph.pb")
    out = tmp_path / "from_graph.pt"
    convert_checkpoint(graph, out)
    assert_matches_reference(out, reference)


def test_tensorflow_checkpoint_in_a_model_zoo_tarball_converts(reference, tmp_path):
    """The checkpoint is preferred over the frozen graph in a tarball, and moving averages over the variables."""
    import tarfile

    variables = tf_variables(reference["state"])
    folder = tmp_path / "deeplabv3_mnv2_pascal_train_aug"
    folder.mkdir()
    ema = ("MobilenetV2/Conv/weights", "concat_projection/BatchNorm/gamma", "logits/semantic/biases")
    prefix = write_tf_checkpoint(variables, folder / "model.ckpt", ema=ema)
    assert (folder / "model.ckpt-30000.index").is_file()
    bad = dict(variables, **{"MobilenetV2/Conv/weights": variables["MobilenetV2/Conv/weights"] * 0})
    write_frozen_graph(bad, folder / "frozen_inference_graph.pb")  # would fail the comparison if it were read
    tarball = tmp_path / "deeplabv3_mnv2_pascal_train_aug_2018_01_29.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    out = tmp_path / "from_ckpt.pt"
    convert_checkpoint(tarball, out)
    assert_matches_reference(out, reference)
    convert_checkpoint(str(prefix) + ".index", tmp_path / "from_index.pt")
    assert_matches_reference(tmp_path / "from_index.pt", reference)


def test_width_half_converts_and_is_recognised(tmp_path):
    state = random_state(width=0.5, seed=4)
    variables = tf_variables(state)
    info = convert_checkpoint(write_frozen_graph(variables, tmp_path / "g.pb"), tmp_path / "dm05.pt")
    assert info.config["width"] == 0.5
    x = torch.randn(1, 3, 129, 129)
    with torch.no_grad():
        theirs = hf_model(state, 16, width=0.5)(pixel_values=x).logits
        ours = load_model_file(tmp_path / "dm05.pt")[0].eval().logits(x)
    assert (ours - theirs).abs().max().item() <= TOL


# --- bad input: a clear error naming the file and the problem, and no file written ---------------------------------


def refused(src, out, match, **kwargs):
    with pytest.raises(WeightsError, match=match) as info:
        convert_checkpoint(src, out, **kwargs)
    assert not out.exists()
    assert not list(out.parent.glob(f".{out.name}*"))  # no temporary left behind
    return str(info.value)


def test_a_checkpoint_of_another_architecture_is_refused(tmp_path):
    variables = {"xception_65/entry_flow/conv1_1/weights": np.zeros((3, 3, 3, 32), np.float32)}
    graph = write_frozen_graph(variables, tmp_path / "xception.pb")
    message = refused(graph, tmp_path / "out.pt", "not DeepLab's MobileNetV2")
    assert str(graph) in message and "xception_65" in message


def test_missing_variables_are_named(reference, tmp_path):
    variables = tf_variables(reference["state"])
    del variables["MobilenetV2/expanded_conv_7/depthwise/depthwise_weights"]
    graph = write_frozen_graph(variables, tmp_path / "g.pb")
    message = refused(graph, tmp_path / "out.pt", "1 variables")
    assert "expanded_conv_7/depthwise/depthwise_weights" in message and str(graph) in message


def test_an_aspp_checkpoint_is_refused(reference, tmp_path):
    variables = tf_variables(reference["state"])
    variables["aspp1_depthwise/depthwise_weights"] = np.zeros((3, 3, 320, 1), np.float32)
    refused(write_frozen_graph(variables, tmp_path / "g.pb"), tmp_path / "out.pt", "ASPP")


def test_truncated_files_are_refused(reference, tmp_path):
    good = (reference["folder"] / "model.safetensors").read_bytes()
    (tmp_path / "model.safetensors").write_bytes(good[: len(good) // 2])
    message = refused(tmp_path / "model.safetensors", tmp_path / "out.pt", "not a readable")
    assert str(tmp_path / "model.safetensors") in message
    graph = write_frozen_graph(tf_variables(reference["state"]), tmp_path / "g.pb").read_bytes()
    (tmp_path / "cut.pb").write_bytes(graph[: len(graph) // 3])
    refused(tmp_path / "cut.pb", tmp_path / "out.pt", "cut.pb")


def test_a_width_that_does_not_match_is_refused(reference, tmp_path):
    message = refused(reference["folder"] / "model.safetensors", tmp_path / "out.pt", "width-1 MobileNetV2", width=0.5)
    assert "model.safetensors" in message


def test_a_missing_source_and_an_offline_hub_id_fail_fast(tmp_path, monkeypatch):
    refused(tmp_path / "nothing.pb", tmp_path / "out.pt", "not found")
    monkeypatch.setattr("deeplab_mobile.convert.host_reachable", lambda host: False)
    message = refused("google/deeplabv3_mobilenet_v2_1.0_513", tmp_path / "out.pt", "cannot be reached")
    assert "https://huggingface.co/google/deeplabv3_mobilenet_v2_1.0_513" in message


def test_the_command_line_reports_one_line_and_fails(tmp_path):
    out = tmp_path / "out.pt"
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "convert_weights.py"), str(tmp_path / "missing.pb"), "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert result.returncode == 1
    assert "missing.pb: not found" in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()
