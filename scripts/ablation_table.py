"""The ablation table of a sweep: Markdown, CSV, LaTeX and a mIoU-vs-MAdds plot (docs/sweeps.md).

python scripts/train.py -m experiment=head_os recipe=cpu_synthetic trainer.iters=300
python scripts/ablation_table.py outputs/multirun/<date>                     # -> outputs/multirun/<date>/report/
python scripts/ablation_table.py outputs/multirun/<date> --latency cpu       # also time each model (513x513)
"""

from deeplab_mobile.cli import script

if __name__ == "__main__":
    script("ablation-table")
