"""The ExecuTorch runner's refusals: a file the runtime cannot load, a missing one, an input larger than a
free-size program's planned maximum or other than a static one's size; each in one line naming the file."""

import pytest
import torch

from deeplab_mobile.deploy.executorch import PteSegmentor, export_pte
from deeplab_mobile.models import build_model

pytest.importorskip("executorch")


def test_unloadable_and_missing_programs_are_named(tmp_path):
    bad = tmp_path / "model.pte"
    bad.write_bytes(b"not a flatbuffer" * 8)
    with pytest.raises(ValueError, match=r"model.pte: not an ExecuTorch program this runtime can load"):
        PteSegmentor(bad)
    with pytest.raises(FileNotFoundError, match=r"missing.pte: ExecuTorch program not found"):
        PteSegmentor(tmp_path / "missing.pte")


def test_a_program_with_the_resize_is_static():
    with pytest.raises(ValueError, match="static size"):
        export_pte(build_model(head="no_aspp", width=0.35), "never.pte", dynamic=True)


@pytest.mark.slow
def test_sizes_a_program_cannot_take_are_refused(tmp_path):
    net = build_model(head="no_aspp", width=0.35).eval()
    small = export_pte(net, tmp_path / "free.pte", (65, 65), dynamic=True, upsample=False, max_side=97)
    runner = PteSegmentor(small, output_stride=16, threads=1)
    with torch.no_grad():
        assert torch.allclose(runner.logits(torch.ones(1, 3, 97, 81)), net.logits(torch.ones(1, 3, 97, 81)), atol=1e-4)
    with pytest.raises(ValueError, match=r"free.pte: takes inputs up to 97x97, got 129x65"):
        runner(torch.zeros(1, 3, 129, 65))
