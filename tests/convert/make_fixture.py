"""Writes ``fixtures/tf_checkpoint/`` with TensorFlow: the bytes the project's TensorFlow-free checkpoint reader
(``deeplab_mobile.convert.tf_checkpoint``) and the tests' writer (``tf_bundle.py``) are held to.

Run it in an environment of its own that has TensorFlow (the project's does not need it)::

    python3 -m venv /tmp/tf && /tmp/tf/bin/pip install tensorflow-cpu numpy
    /tmp/tf/bin/python tests/convert/make_fixture.py

It imports nothing of the project; ``variables()`` is the recipe the tests recompute to know every value.
"""

import os
from pathlib import Path

import numpy as np

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "tf_checkpoint"
STEP = 30000


def variables() -> dict[str, np.ndarray]:
    """Twenty-odd tensors named and shaped as DeepLab's MobileNetV2 names them (HWIO kernels, depthwise H W C 1,
    BatchNorm vectors, an ``ExponentialMovingAverage`` twin, the logits' bias), plus the step counter and tensors
    of other dtypes and ranks: more entries than one restart interval of the table (16)."""
    rng = np.random.default_rng(0)
    out = {
        "global_step": np.int64(STEP),
        "MobilenetV2/Conv/weights": rng.standard_normal((3, 3, 3, 4)).astype(np.float32),
        "MobilenetV2/Conv/weights/ExponentialMovingAverage": rng.standard_normal((3, 3, 3, 4)).astype(np.float32),
        "MobilenetV2/expanded_conv/depthwise/depthwise_weights": rng.standard_normal((3, 3, 4, 1)).astype(np.float32),
        "logits/semantic/biases": rng.standard_normal(21).astype(np.float32),
        "scalar_float": np.float32(3.5),
        "half": rng.standard_normal((2, 3)).astype(np.float16),
        "doubles": rng.standard_normal(3).astype(np.float64),
        "ints": np.arange(-3, 3, dtype=np.int32),
    }
    for scope in ("Conv", "expanded_conv/depthwise", "expanded_conv/project"):
        for name in ("beta", "gamma", "moving_mean", "moving_variance"):
            out[f"MobilenetV2/{scope}/BatchNorm/{name}"] = rng.standard_normal(4).astype(np.float32)
    return out


def main() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    FIXTURE.mkdir(parents=True, exist_ok=True)
    with tf.Graph().as_default():
        tf_vars = [tf.compat.v1.Variable(value, name=name) for name, value in variables().items()]
        saver = tf.compat.v1.train.Saver(tf_vars, write_version=tf.compat.v1.train.SaverDef.V2)
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            saver.save(session, str(FIXTURE / "model.ckpt"), global_step=STEP, write_meta_graph=False)
    (FIXTURE / "checkpoint").unlink(missing_ok=True)  # the "latest checkpoint" pointer: not part of the format
    print(f"wrote {sorted(p.name for p in FIXTURE.iterdir())} with TensorFlow {tf.__version__}")


if __name__ == "__main__":
    main()
