"""What moves the on-device candidate's INT8 speed in ONNX Runtime: quantization settings, session options, and
the final resize's floor (docs/benchmark.md).

python scripts/benchmark_int8.py                          # 513x513, 1 and 2 threads
python scripts/benchmark_int8.py --tries default all_int8 --threads 1 --repeats 5
"""

from deeplab_mobile.cli import script

if __name__ == "__main__":
    script("benchmark-int8")
