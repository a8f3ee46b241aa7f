"""Operator records of one training step: what they hold (phases, modules, named parameters and optimizer state,
hashes that follow the values), and where two records part; the difference that moved the deterministic
quickstart between CPU vendors (a square root that computes otherwise from the same inputs) is found as such."""

import copy
import json
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

from deeplab_mobile.engine.oprecord import (
    OpRecordError,
    compare_records,
    is_record,
    read_record,
    record_iteration,
    tensor_hash,
    write_record,
)
from tests.helpers import ROOT


def net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 1))


def one_step(model, optimizer, iteration=1):
    images, masks = torch.rand(2, 3, 8, 8), torch.randint(0, 2, (2, 8, 8))
    with record_iteration(iteration, model, optimizer, images, masks) as record:
        loss = nn.functional.cross_entropy(model(images * 2 - 1), masks)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    record.summary["loss"] = repr(loss.item())
    return record


def test_a_record_holds_every_phase_with_its_module_node_and_names():
    model = net()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    one_step(model, optimizer)  # the optimizer's state exists from the second step on
    torch.manual_seed(1)
    record = one_step(model, optimizer, iteration=2).to_dict()
    phases = [op["phase"] for op in record["ops"]]
    assert phases[0] == "input" and phases.index("forward") < phases.index("loss") < phases.index("backward")
    assert phases.index("backward") < phases.index("optimizer") and set(phases) <= {
        "input", "forward", "loss", "backward", "optimizer", "after"
    }  # fmt: skip
    conv = next(op for op in record["ops"] if op["op"] == "aten.convolution.default")
    assert conv["phase"] == "forward" and conv["where"].endswith(".0") and conv["names"] == ["0.bias", "0.weight"]
    assert any(op["phase"] == "backward" and op["where"] == "ConvolutionBackward0" for op in record["ops"])
    sqrt = [op for op in record["ops"] if op["op"] == "aten.sqrt.default"]
    assert len(sqrt) == 6 and sqrt[0]["phase"] == "optimizer" and sqrt[0]["names"] == ["0.weight.exp_avg_sq"]
    fresh = net()
    first = one_step(fresh, torch.optim.AdamW(fresh.parameters())).to_dict()  # the state is made in the step
    assert [op["names"] for op in first["ops"] if op["op"] == "aten.sqrt.default"][0] == ["0.weight.exp_avg_sq"]
    assert record["weights_before"] != record["weights_after"] and record["batch"]["images"]


def test_hashes_follow_values_not_layout():
    x = torch.rand(2, 3, 4, 5)
    assert tensor_hash(x) == tensor_hash(x.to(memory_format=torch.channels_last)) == tensor_hash(x.clone())
    y = x.clone()
    y.view(-1)[7] = torch.nextafter(y.view(-1)[7], torch.tensor(2.0))  # one unit in the last place
    assert tensor_hash(y) != tensor_hash(x) and tensor_hash(x.double()) != tensor_hash(x)


def records(tmp_path):
    model = net()
    a = one_step(model, torch.optim.SGD(model.parameters(), lr=0.1)).to_dict()
    model = net()
    b = one_step(model, torch.optim.SGD(model.parameters(), lr=0.1)).to_dict()
    return a, b


def test_two_identical_steps_compare_identical(tmp_path):
    torch.manual_seed(0)
    a, _ = records(tmp_path)
    torch.manual_seed(0)
    b, _ = records(tmp_path)
    lines = compare_records(a, b)
    assert "every operator's outputs: identical" in lines and "weights after the iteration: identical" in lines


def test_the_first_differing_operator_is_named_and_told_apart_from_propagation():
    torch.manual_seed(0)
    a, _ = records(None)
    b = copy.deepcopy(a)
    k = next(i for i, op in enumerate(b["ops"]) if op["phase"] == "backward")
    b["ops"][k]["out"] = ["0" * 16]
    lines = compare_records(a, b)
    assert any(
        line.startswith(f"first differing operator: #{k} ") and "from identical inputs" in line for line in lines
    )
    b["ops"][k]["in"] = ["1" * 16]
    assert any("from differing inputs" in line for line in compare_records(a, b))
    b["ops"][k]["op"] = "aten.other.default"
    assert any(f"operator #{k}: A ran" in line and "different code" in line for line in compare_records(a, b))
    b = copy.deepcopy(a)
    b["weights_before"] = "x"
    assert any(line.startswith("weights before the iteration: differ") for line in compare_records(a, b))
    b["iteration"] = 9
    with pytest.raises(OpRecordError, match="different iterations"):
        compare_records(a, b)


def test_records_are_written_read_and_recognised(tmp_path):
    torch.manual_seed(0)
    a, _ = records(tmp_path)
    model = net()
    record = one_step(model, torch.optim.SGD(model.parameters(), lr=0.1))
    path = write_record(tmp_path / "r.json", record, {"cpu": {"vendor": "x"}})
    assert is_record(path) and read_record(path)["environment"] == {"cpu": {"vendor": "x"}}
    (tmp_path / "other.json").write_text(json.dumps({"kind": "something else"}))
    assert not is_record(tmp_path / "other.json") and not is_record(tmp_path)
    with pytest.raises(OpRecordError, match="not an operator record"):
        read_record(tmp_path / "other.json")


STEP = """
import sys, torch
from torch import nn
from deeplab_mobile import determinism
from deeplab_mobile.engine.oprecord import record_iteration, write_record
if sys.argv[2] == "exact":
    determinism.use_exact_sqrt()
torch.manual_seed(0)
model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.Conv2d(16, 2, 1))
optimizer = torch.optim.AdamW(model.parameters(), lr=0.01)
images, masks = torch.rand(4, 3, 16, 16), torch.randint(0, 2, (4, 16, 16))
with record_iteration(1, model, optimizer, images, masks) as record:
    loss = nn.functional.cross_entropy(model(images), masks)
    loss.backward()
    optimizer.step()
write_record(sys.argv[1], record)
"""


@pytest.mark.skipif(not torch.backends.mkl.is_available(), reason="the difference shown is MKL's square root's")
def test_a_square_root_computed_otherwise_is_found_where_it_happens(tmp_path):
    """MKL's float32 square root against the correctly rounded one (deterministic mode's), each in a fresh process
    (the kernel is replaced for the process's life): the comparison names aten.sqrt in the optimizer step, from
    identical inputs, the shape of what parted the quickstart between an AMD and an Intel CPU."""
    paths = {}
    for kind in ("mkl", "exact"):
        paths[kind] = tmp_path / f"{kind}.json"
        done = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(STEP), str(paths[kind]), kind],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-2000:]
    lines = compare_records(read_record(paths["mkl"]), read_record(paths["exact"]))
    assert "weights before the iteration: identical" in lines
    first = next(line for line in lines if line.startswith("first differing operator"))
    assert "aten.sqrt.default (optimizer)" in first and "from identical inputs" in first
    assert "weights after the iteration: differ" in lines
