"""The numerics probe: which part of the environment changes a training's weights on this machine
(``scripts/numerics_probe.py``; docs/reproducibility.md).

Trains the quickstart's network for a few iterations once per variant, each in its own process (the variables are
read when torch starts), and compares each run with the first: bit-identical weights or not, and the iteration
their losses first differ. Variants: the same run again, other thread counts, oneDNN's instruction-set cap,
ATen's vector width, MKL's code path, oneDNN off, the generated data written again elsewhere, and deterministic
mode under each of the others. Writes ``probe.json`` and ``probe.md`` to its output folder.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from tqdm import tqdm

from ..compare import compare_runs
from ..files import write_json, write_text

TRAIN = ["-m", "deeplab_mobile", "train"]  # the installed command: a checkout's scripts/ need not be there
QUICKSTART = ["recipe=cpu_synthetic", "head=no_aspp", "width=0.5"]
# torch.backends.mkldnn has no variable: a variant without oneDNN runs the training command through this
NO_ONEDNN = (
    "import runpy, sys, torch; torch.backends.mkldnn.enabled = False; sys.argv = ['deeplab_mobile', *sys.argv[1:]]; "
    "runpy.run_module('deeplab_mobile', run_name='__main__')"
)


@dataclass
class Variant:
    name: str
    what: str
    env: dict[str, str] = field(default_factory=dict)
    overrides: list[str] = field(default_factory=list)
    onednn: bool = True


def variants(deterministic: bool) -> list[Variant]:
    noise = [
        Variant("threads=1", "OMP_NUM_THREADS=1", {"OMP_NUM_THREADS": "1"}),
        Variant("threads=3", "OMP_NUM_THREADS=3", {"OMP_NUM_THREADS": "3"}),
        Variant("onednn_avx2", "oneDNN capped at AVX2", {"ONEDNN_MAX_CPU_ISA": "AVX2"}),
        Variant("onednn_avx512", "oneDNN capped at AVX-512", {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"}),
        Variant("aten_avx2", "ATen's kernels at AVX2", {"ATEN_CPU_CAPABILITY": "avx2"}),
        Variant("aten_default", "ATen's kernels without vectors", {"ATEN_CPU_CAPABILITY": "default"}),
        Variant("mkl_compatible", "MKL's compatible code path", {"MKL_CBWR": "COMPATIBLE"}),
        Variant("no_onednn", "torch.backends.mkldnn off", onednn=False),
    ]
    plain = [Variant("again", "the same run again"), *noise, Variant("data_again", "the data written again")]
    if not deterministic:
        return [Variant("default", "the reference"), *plain]
    # deterministic mode starts its run in a fresh process: a switch set inside this one (oneDNN off) does not reach it
    det = ["trainer.deterministic=true"]
    return [
        Variant("det", "deterministic mode (the reference)", overrides=det),
        *(Variant(f"det+{v.name}", f"deterministic mode, {v.what}", v.env, det) for v in plain if v.onednn),
    ]


def train(v: Variant, folder: Path, iters: int, data_root: Path) -> float:
    """One training in its own process; returns its wall time."""
    root = data_root / ("again" if v.name.endswith("data_again") else "probe")
    stage = max(1, iters // 4)
    args = [
        *QUICKSTART,
        f"trainer.iters={iters}",
        f"trainer.final_stage.iters={stage}",
        f"trainer.ckpt_every={stage}",
        "eval.mf=false",
        "progress=false",
        f"data.generate.root={root}",
        f"hydra.run.dir='{folder}'",  # quoted: a variant's folder name holds "="
        *v.overrides,
    ]
    command = [sys.executable, *TRAIN, *args] if v.onednn else [sys.executable, "-c", NO_ONEDNN, "train", *args]
    start = time.perf_counter()
    done = subprocess.run(command, env={**os.environ, **v.env}, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"{v.name}: training failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return time.perf_counter() - start


def outcome(reference: Path, folder: Path) -> dict:
    c = compare_runs(reference, folder)
    weights = next((line for line in c.training if line.startswith("weights:")), "")
    losses = next((line for line in c.training if line.startswith("losses:")), "")
    data = c.sections.get("data", [])
    return {
        "identical_weights": "bit-identical" in weights,
        "weights": weights.removeprefix("weights: "),
        "losses": losses.removeprefix("losses: "),
        "data_manifest_differs": bool(data),
        "environment_differs": [k for t, rows in c.sections.items() for k, _, _ in rows if t != "settings"],
    }


def table(rows: list[dict], header: str) -> str:
    lines = [header, "", "| variant | what | weights vs the reference | losses | s |", "|---|---|---|---|---|"]
    for r in rows:
        same = "**identical**" if r["identical_weights"] else "differ"
        lines.append(f"| {r['name']} | {r['what']} | {same}: {r['weights']} | {r['losses']} | {r['seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iters", type=int, default=8, help="iterations per training (the last quarter at OS8)")
    parser.add_argument("--deterministic", action="store_true", help="every variant in deterministic mode")
    parser.add_argument("--out", type=Path, help="output folder (default outputs/numerics_probe/<date>)")
    parser.add_argument("--data", type=Path, default=Path("data/numerics_probe"), help="where the data is written")
    parser.add_argument("--only", nargs="*", help="run only these variants (and the reference)")
    args = parser.parse_args(argv)
    out = args.out or Path("outputs/numerics_probe") / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    chosen = variants(args.deterministic)
    if args.only:
        chosen = [chosen[0], *(v for v in chosen[1:] if v.name in args.only)]
    rows, reference = [], out / chosen[0].name
    for v in tqdm(chosen, desc="variants"):
        seconds = train(v, out / v.name, args.iters, args.data)
        row = {"name": v.name, "what": v.what, "env": v.env, "onednn": v.onednn, "seconds": seconds}
        if v is chosen[0]:
            row.update(identical_weights=True, weights="(reference)", losses="", environment_differs=[])
        else:
            row.update(outcome(reference, out / v.name))
        rows.append(row)
        tqdm.write(f"{v.name}: {'identical' if row['identical_weights'] else 'differs'} ({row['weights']})")
    write_json(out / "probe.json", {"iters": args.iters, "deterministic": args.deterministic, "variants": rows})
    header = (
        f"{args.iters} iterations of the quickstart per variant{', deterministic mode' if args.deterministic else ''}"
    )
    write_text(out / "probe.md", table(rows, header))
    print(table(rows, header))
    print(f"-> {out}/probe.md")
    return 0
