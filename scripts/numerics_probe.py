"""Which part of the environment changes a training's weights on this machine (docs/reproducibility.md).

python scripts/numerics_probe.py                    # the default mode: threads, instruction sets, oneDNN, data
python scripts/numerics_probe.py --deterministic    # the same variants, each in deterministic mode
"""

from deeplab_mobile.cli import script

if __name__ == "__main__":
    script("numerics-probe")
