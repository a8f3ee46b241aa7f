"""Conversion parity against transformers' MobileNetV2ForSemanticSegmentation, per source format: the table in
results/model_zoo.md (python -m tests.convert.parity_table). The reference weights and files are the tests' own."""

import tarfile
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

from deeplab_mobile.convert import convert_checkpoint
from deeplab_mobile.models import load_model_file
from tests.convert.test_convert import hf_model, random_state, tf_variables, write_frozen_graph, write_tf_checkpoint

tmp = Path(tempfile.mkdtemp())
state = random_state()
x = torch.randn(1, 3, 513, 513, generator=torch.Generator().manual_seed(2))
even = torch.randn(1, 3, 500, 376, generator=torch.Generator().manual_seed(3))
save_file({k: v.contiguous() for k, v in state.items()}, str(tmp / "model.safetensors"))
variables = tf_variables(state)
graph = write_frozen_graph(variables, tmp / "frozen_inference_graph.pb")
(tmp / "zoo").mkdir()
write_tf_checkpoint(variables, tmp / "zoo" / "model.ckpt")
with tarfile.open(tmp / "zoo.tar.gz", "w:gz") as tar:
    tar.add(tmp / "zoo", arcname="zoo")
refs = {}
with torch.no_grad():
    for os_ in (8, 16):
        r = hf_model(state, os_)
        refs[os_] = (r(pixel_values=x).logits, r(pixel_values=even).logits)
print("| source | convert s | OS | max abs diff 513x513 | max abs diff 500x376 | logit std |")
print("|---|---|---|---|---|---|")
for name, src in (
    ("safetensors", tmp / "model.safetensors"),
    ("frozen graph", graph),
    ("TF checkpoint (tarball)", tmp / "zoo.tar.gz"),
):
    t = time.perf_counter()
    convert_checkpoint(src, tmp / "out.pt")
    dt = time.perf_counter() - t
    for os_ in (8, 16):
        m = load_model_file(tmp / "out.pt", output_stride=os_)[0].eval()
        with torch.no_grad():
            a, b = m.logits(x), m.logits(even)
        print(
            f"| {name} | {dt:.1f} | {os_} | {(a - refs[os_][0]).abs().max().item():.1e} | "
            f"{(b - refs[os_][1]).abs().max().item():.1e} | {refs[os_][0].std().item():.2f} |"
        )
