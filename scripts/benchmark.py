"""Latency and memory of the Table 7 networks against their peers (docs/benchmark.md).

python scripts/benchmark.py                                   # every network, CPU, 1 and 2 threads
python scripts/benchmark.py --models candidate smp_deeplabv3_mnv2 --threads 1 2
python scripts/benchmark.py --size 129 --repeats 3            # a quick look
"""

from deeplab_mobile.cli import script

if __name__ == "__main__":
    script("benchmark")
