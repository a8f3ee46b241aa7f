"""Frames per second of the on-device candidate on a video, in each deployed form (docs/benchmark.md).

python scripts/benchmark_video.py                          # the generated clip, 1 and 2 threads
python scripts/benchmark_video.py --clip my_clip.mp4 --frames 120 --threads 2
"""

from deeplab_mobile.cli import script

if __name__ == "__main__":
    script("benchmark-video")
