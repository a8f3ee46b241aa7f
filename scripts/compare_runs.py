"""What two runs differ in, and where their trainings part (docs/reproducibility.md).

python scripts/compare_runs.py outputs/train/<run A> outputs/train/<run B>
python scripts/compare_runs.py outputs/train/<run>/eval/<record> outputs/train/<other>/eval/<record> --json cmp.json
"""

from deeplab_mobile.cli import script

if __name__ == "__main__":
    script("compare-runs")
