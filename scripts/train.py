"""Train a DeepLabv3 model; evaluate it single-scale and MF + flip at the end (docs/training.md).

python scripts/train.py head=no_aspp os=16                               # PASCAL VOC trainaug, DeepLab's recipe
python scripts/train.py recipe=cpu_synthetic head=no_aspp width=0.5      # the generated dataset, on a CPU
python scripts/train.py recipe=cpu_synthetic hydra.run.dir=outputs/train/<run> resume=true
torchrun --nproc_per_node=4 scripts/train.py trainer.sync_bn=true
python scripts/train.py -m experiment=head_os recipe=cpu_synthetic      # a sweep -> scripts/ablation_table.py
"""

from deeplab_mobile.cli import script

if __name__ == "__main__":
    script("train")
