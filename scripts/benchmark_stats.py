"""What the per-image matrices and the bootstrap cost, and the report's time on a sweep (docs/sweeps.md).

python scripts/benchmark_stats.py                      # 1,449 generated images of VOC's size, 21 classes; 24 runs
python scripts/benchmark_stats.py --images 200 --runs 6
"""

from deeplab_mobile.cli import script

if __name__ == "__main__":
    script("benchmark-stats")
