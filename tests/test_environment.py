"""The environment record, the data manifest, the training trace and deterministic mode's pins, each against
values written out independently (a hand-written cpuinfo, a git tree made here, files changed by hand)."""

import hashlib
import importlib.metadata
import json
import shutil
import subprocess

import numpy as np
import pytest
import torch

from deeplab_mobile import determinism
from deeplab_mobile.data.manifest import data_manifest
from deeplab_mobile.data.synthetic import write_synthetic_voc
from deeplab_mobile.data.voc import VOCSegmentation
from deeplab_mobile.engine.checkpoint import weights_sha256
from deeplab_mobile.engine.trace import Trace, read_hashes, read_losses, read_trace
from deeplab_mobile.environment import (
    code_state,
    config_sha256,
    cpu_caches,
    cpu_info,
    environment_record,
    imported_libraries,
    numerics_env,
    write_environment,
)

FLAGS = "fpu sse sse2 sse4_2 avx avx2 fma f16c avx512f avx512bw avx512_vnni avx512_bf16 avx512_fp16 amx_bf16 amx_tile "
XEON = f"""processor\t: 0
vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 143
model name\t: Intel(R) Xeon(R) Platinum 8480+
stepping\t: 8
microcode\t: 0x2b000603
flags\t\t: {FLAGS}amx_int8 avx_vnni rdrand hypervisor

processor\t: 1
vendor_id\t: GenuineIntel
"""


def test_cpu_info_reads_vendor_model_and_the_numerics_isa_flags():
    info = cpu_info(XEON)
    assert info["vendor"] == "GenuineIntel" and info["model"] == "Intel(R) Xeon(R) Platinum 8480+"
    assert info["family_model_stepping"] == "6/143/8"
    want = "sse4_2 avx avx2 fma f16c avx512f avx512bw avx512_vnni avx512_bf16 avx512_fp16 amx_bf16 amx_tile amx_int8"
    assert info["isa"] == sorted([*want.split(), "avx_vnni"])  # not fpu, sse, sse2, rdrand
    assert info["aten_capability"] == torch.backends.cpu.get_cpu_capability()
    assert info["microcode"] == "0x2b000603" and info["hypervisor"] is True


def test_cpu_caches_as_linux_lists_them(tmp_path):
    for i, (level, kind, size) in enumerate([(1, "Data", "48K"), (1, "Instruction", "32K"), (2, "Unified", "2048K")]):
        folder = tmp_path / f"index{i}"
        folder.mkdir()
        for name, value in (("level", level), ("type", kind), ("size", size)):
            (folder / name).write_text(f"{value}\n")
    assert cpu_caches(tmp_path) == {"L1d": "48K", "L1i": "32K", "L2": "2048K"}


def test_numerics_env_keeps_the_variables_that_change_kernels():
    environ = {"OMP_NUM_THREADS": "4", "ONEDNN_MAX_CPU_ISA": "AVX2", "CUBLAS_WORKSPACE_CONFIG": ":4096:8",
               "HOME": "/root", "TORCH_HOME": "/cache", "PATH": "/bin", "MKL_CBWR": "AVX2"}  # fmt: skip
    assert numerics_env(environ) == {
        "CUBLAS_WORKSPACE_CONFIG": ":4096:8",
        "MKL_CBWR": "AVX2",
        "OMP_NUM_THREADS": "4",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
    }


def test_imported_libraries_are_the_installed_versions():
    versions = imported_libraries()
    for dist in ("torch", "numpy"):
        assert versions[dist] == importlib.metadata.version(dist)
    assert "PyYAML" not in imported_libraries({"torch": None})


def git(tree, *args):
    return subprocess.run(["git", *args], cwd=tree, capture_output=True, text=True, check=True).stdout.strip()


def test_code_state_commit_dirty_and_the_hash_of_the_difference(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    git(tmp_path, "init", "-q")
    (tmp_path / "a.py").write_text("x = 1\n")
    git(tmp_path, "add", "a.py")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    clean = code_state(tmp_path)
    assert clean["commit"] == git(tmp_path, "rev-parse", "HEAD") and clean["dirty"] is False
    (tmp_path / "a.py").write_text("x = 2\n")
    edited = code_state(tmp_path)
    diff = subprocess.run(["git", "diff", "HEAD", "--binary"], cwd=tmp_path, capture_output=True, check=True).stdout
    assert edited["dirty"] is True and edited["diff_sha256"] == hashlib.sha256(diff).hexdigest()
    (tmp_path / "b.py").write_text("y = 1\n")  # an untracked file is part of the code that ran
    assert code_state(tmp_path)["diff_sha256"] != edited["diff_sha256"]
    assert code_state(tmp_path / ".git" / "..").get("commit") == clean["commit"]


def test_the_record_is_written_whole_with_the_config_hash(tmp_path):
    config = {"optim": {"lr": 0.007}, "os": 16}
    path = write_environment(tmp_path, config=config, data={"sha256": "x"})
    record = json.loads(path.read_text())
    assert record["config_sha256"] == config_sha256({"os": 16, "optim": {"lr": 0.007}})
    assert record["config_sha256"] == hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()
    assert record["threads"]["intra_op"] == torch.get_num_threads()
    assert record["torch_build"]["torch"] == torch.__version__
    assert record["torch_build"]["onednn"] in torch.__config__.show()
    assert set(environment_record().to_dict()) == set(record) and [p.name for p in tmp_path.iterdir()] == [
        "environment.json"
    ]


def test_the_manifest_follows_the_labels_and_the_lists_not_the_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    voc = write_synthetic_voc(tmp_path / "one", n_train=4, n_val=2, size=(32, 48), seed=0, progress=False)
    copy = write_synthetic_voc(tmp_path / "two", n_train=4, n_val=2, size=(32, 48), seed=0, progress=False)

    def manifest(root):
        return data_manifest({s: VOCSegmentation(root, s) for s in ("train", "val")})

    first = manifest(voc)
    assert first["splits"]["train"]["samples"] == 4 and first["splits"]["val"]["list_file"]["size"] > 0
    masks = sorted((voc / "SegmentationClass").glob("*.png"))
    assert first["splits"]["train"]["mask_bytes"] + first["splits"]["val"]["mask_bytes"] == sum(
        p.stat().st_size for p in masks
    )
    assert manifest(copy)["sha256"] == first["sha256"]  # the same data elsewhere
    assert list((tmp_path / "cache" / "deeplab_mobile" / "manifest").glob("*.json"))  # hashes cached
    mask = voc / "SegmentationClass" / "synth_train_000001.png"
    from PIL import Image

    labels = np.array(Image.open(mask))
    labels[0, 0] = (labels[0, 0] + 1) % 21
    image = Image.fromarray(labels, mode="P")
    image.putpalette(Image.open(mask).getpalette())
    image.save(mask)
    changed = manifest(voc)
    assert changed["sha256"] != first["sha256"]
    assert changed["splits"]["val"] == first["splits"]["val"]  # only the split whose mask changed
    listing = voc / "ImageSets" / "Segmentation" / "val.txt"
    listing.write_text("\n".join(reversed(listing.read_text().split())) + "\n")
    assert manifest(voc)["splits"]["val"] != first["splits"]["val"]


def test_the_trace_writes_exact_losses_and_resumes_where_the_checkpoint_was(tmp_path):
    trace = Trace()
    losses = [float(np.float32(v)) for v in (2.302585, 1.1, 0.30000001)]
    for v in losses:
        trace.add(v)
    trace.checkpoint(2, "h2")
    trace.checkpoint(3, "h3")
    trace.write(tmp_path)
    assert read_losses(tmp_path / "train_loss.csv") == dict(enumerate(losses, 1))
    assert read_hashes(tmp_path / "weight_hashes.json") == {2: "h2", 3: "h3"}
    resumed = Trace()
    resumed.load(trace.state(), iteration=2)  # a checkpoint at 2: what came after it is gone
    assert resumed.losses == losses[:2] and resumed.hashes == {2: "h2"}
    older = Trace()
    older.load(None, iteration=5)  # a checkpoint from before traces: the log starts at the next iteration
    older.add(0.5)
    older.write(tmp_path)
    assert read_losses(tmp_path / "train_loss.csv") == {6: 0.5}


def test_deterministic_mode_s_trace_keeps_the_weights_hash_after_every_iteration(tmp_path):
    trace = Trace()
    for i, v in enumerate((2.5, 1.5, 0.5)):
        trace.add(v, f"{i:x}" * 64)
    trace.write(tmp_path)
    lines = (tmp_path / "train_loss.csv").read_text().splitlines()
    assert lines[0] == "iteration,loss,weights" and lines[2] == "2,1.5," + "1" * 16
    assert read_trace(tmp_path / "train_loss.csv")[3] == (0.5, "2" * 16)
    resumed = Trace()
    resumed.load(trace.state(), iteration=2)
    assert resumed.steps == ["0" * 16, "1" * 16]
    state = trace.state()
    del state["steps"]  # a checkpoint written before steps were kept: losses only from then on
    older = Trace()
    older.load(state, iteration=3)
    older.write(tmp_path)
    assert (tmp_path / "train_loss.csv").read_text().splitlines()[0] == "iteration,loss"


def test_weight_hash_is_bit_exact_and_layout_free():
    state = {"w": torch.randn(4, 3, 3, 3), "n": torch.tensor(7)}
    same = {"n": torch.tensor(7), "w": state["w"].to(memory_format=torch.channels_last)}
    assert weights_sha256(state) == weights_sha256(same)
    nudged = {"w": state["w"].clone(), "n": state["n"]}
    nudged["w"].view(-1)[5] = torch.nextafter(nudged["w"].view(-1)[5], torch.tensor(10.0))
    assert weights_sha256(nudged) != weights_sha256(state)


def test_deterministic_pins_and_what_a_process_lacks():
    pins = determinism.pinned_environment(2)
    assert pins["ONEDNN_MAX_CPU_ISA"] == "AVX2" and pins["ATEN_CPU_CAPABILITY"] == "avx2"
    assert pins["OMP_NUM_THREADS"] == "2" and pins["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    user = {"OMP_NUM_THREADS": "8", "ONEDNN_DEFAULT_FPMATH_MODE": "BF16", "HOME": "/root"}
    wrong = determinism.unpinned(2, user)
    assert wrong["OMP_NUM_THREADS"] == ("8", "2") and wrong["ONEDNN_DEFAULT_FPMATH_MODE"] == ("BF16", None)
    child = determinism.child_environment(2, user)
    assert "ONEDNN_DEFAULT_FPMATH_MODE" not in child and child["HOME"] == "/root"
    assert determinism.unpinned(2, child) == {}
    with pytest.raises(ValueError, match="positive integer"):
        determinism.pinned_environment(0)


def test_apply_refuses_a_process_started_without_the_pins(monkeypatch):
    monkeypatch.delenv(determinism.RELAUNCHED, raising=False)
    with pytest.raises(determinism.DeterminismError, match="before torch starts.*scripts/train.py"):
        determinism.apply(2, torch.device("cpu"))


class WarnsLikeCuda(torch.nn.Module):
    """A step that uses the random stream and an op PyTorch would name as lacking a deterministic kernel."""

    def __init__(self):
        super().__init__()
        self.conv, self.drop = torch.nn.Conv2d(3, 2, 1), torch.nn.Dropout(0.5)

    def forward(self, x):
        import warnings

        warnings.warn(
            "upsample_bilinear2d_backward_out_cuda does not have a deterministic implementation, but you set "
            "'torch.use_deterministic_algorithms(True, warn_only=True)'",
            UserWarning,
            stacklevel=2,
        )
        return self.drop(self.conv(x))


def test_the_probe_step_names_the_ops_and_leaves_the_model_and_random_stream_alone():
    model = WarnsLikeCuda()
    before, weights = torch.get_rng_state(), {k: v.clone() for k, v in model.state_dict().items()}
    assert determinism.nondeterministic_ops(model, torch.device("cpu")) == ["upsample_bilinear2d_backward_out_cuda"]
    assert torch.equal(torch.get_rng_state(), before)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in weights.items())
    assert model.conv.weight.grad is None
