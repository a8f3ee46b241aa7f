"""Deterministic mode's square root: correctly rounded (against NumPy's, which is the IEEE square root instruction)
over every exponent, the special values and every form of ``aten::sqrt`` once the kernel is replaced; other dtypes
unchanged. The replacement lives for a process, so it is checked in a fresh one."""

import math
import subprocess
import sys
import textwrap

import numpy as np
import torch

from deeplab_mobile.determinism import exact_sqrt
from tests.helpers import ROOT

SPECIALS = [0.0, -0.0, math.inf, -math.inf, math.nan, -1.0, 1e-45, 1.2e-38, 3.4028235e38, 1.0, 2.0, 4.0, 0.25]


def every_exponent(n=2_000_000, seed=0):
    """Random bit patterns of positive floats: every exponent alike, denormals included."""
    bits = np.random.default_rng(seed).integers(0, 0x7F800000, n, dtype=np.int64).astype(np.int32)
    return np.concatenate([bits.view(np.float32), np.asarray(SPECIALS, dtype=np.float32)])


def same_bits(a, b):
    a, b = np.asarray(a), np.asarray(b)
    as_int = {4: np.int32, 8: np.int64}[a.dtype.itemsize]
    return a.dtype == b.dtype and np.all((a.view(as_int) == b.view(as_int)) | (np.isnan(a) & np.isnan(b)))


def test_exact_sqrt_is_the_correctly_rounded_square_root():
    x = every_exponent()
    with np.errstate(invalid="ignore"):
        want = np.sqrt(x)
    assert same_bits(exact_sqrt(torch.from_numpy(x)).numpy(), want)
    c = torch.from_numpy(x[:1200].reshape(4, 3, 10, 10)).to(memory_format=torch.channels_last)
    assert exact_sqrt(c).is_contiguous(memory_format=torch.channels_last)  # the layout is kept


REPLACED = """
import sys, numpy as np, torch
from deeplab_mobile import determinism
x = torch.from_numpy(np.load(sys.argv[1]))
d = torch.rand(1000, dtype=torch.float64) * 100
before = {"mkl": x.sqrt().numpy(), "double": d.sqrt().numpy(), "half": d.half().sqrt().float().numpy()}
determinism.use_exact_sqrt()
determinism.use_exact_sqrt()  # once per process, however often it is asked
out = torch.empty(0)
torch.sqrt(x, out=out)
inplace = x.clone()
inplace.sqrt_()
p = torch.rand(7, requires_grad=True)
p.sqrt().sum().backward()
np.savez(sys.argv[2], functional=torch.sqrt(x).numpy(), method=x.sqrt().numpy(), out=out.numpy(),
         inplace=inplace.numpy(), grad=p.grad.numpy(), want_grad=(0.5 / p.detach().sqrt()).numpy(),
         double_before=before["double"], double_after=d.sqrt().numpy(), half_before=before["half"],
         half_after=d.half().sqrt().float().numpy(), mkl=before["mkl"])
"""


def test_the_replaced_kernel_serves_every_form_of_sqrt_and_leaves_other_dtypes_alone(tmp_path):
    x = every_exponent(200_000, seed=1)
    np.save(tmp_path / "x.npy", x)
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(REPLACED), str(tmp_path / "x.npy"), str(tmp_path / "out.npz")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    got = np.load(tmp_path / "out.npz")
    with np.errstate(invalid="ignore"):
        want = np.sqrt(x)
    for form in ("functional", "method", "out", "inplace"):
        assert same_bits(got[form], want), form
    assert np.allclose(got["grad"], got["want_grad"])  # autograd's backward of sqrt still runs
    assert same_bits(got["double_before"], got["double_after"]) and same_bits(got["half_before"], got["half_after"])
    if torch.backends.mkl.is_available():  # what the replacement is for: MKL's float32 sqrt is not correctly rounded
        assert not same_bits(got["mkl"], want)
