"""One iteration of a recorded training, operator by operator, as a file another machine can write too
(docs/reproducibility.md).

python scripts/replay.py results/reference/quickstart-deterministic --iteration 3 --out ours.json
python scripts/compare_runs.py ours.json theirs.json
"""

from deeplab_mobile.cli import script

if __name__ == "__main__":
    script("replay")
