"""The on-device candidate on ONNX Runtime, ExecuTorch, LiteRT and OpenVINO, float and INT8, side by side
(docs/benchmark.md).

python scripts/benchmark_runtimes.py                      # 513x513, 1 and 2 threads
python scripts/benchmark_runtimes.py --size 129 --rounds 1 --repeats 2
"""

from deeplab_mobile.cli import script

if __name__ == "__main__":
    script("benchmark-runtimes")
