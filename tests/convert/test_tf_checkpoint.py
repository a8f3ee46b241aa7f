"""TensorFlow's checkpoint format without TensorFlow: the reader against files TensorFlow wrote
(``fixtures/tf_checkpoint``, ``make_fixture.py``), the tests' writer against the same bytes, and damaged files."""

import shutil

import numpy as np
import pytest

from deeplab_mobile.convert.tf_checkpoint import CheckpointReader, TFCheckpointError
from tests.convert.make_fixture import FIXTURE, STEP, variables
from tests.convert.tf_bundle import write_checkpoint

PREFIX = FIXTURE / f"model.ckpt-{STEP}"


def test_the_reader_reads_what_tensorflow_wrote():
    want = variables()
    reader = CheckpointReader(PREFIX)
    assert reader.shards == 1
    assert reader.shapes() == {name: np.shape(value) for name, value in want.items()}
    for name, value in want.items():
        got = reader.tensor(name)
        assert got.dtype == np.asarray(value).dtype and got.shape == np.shape(value), name
        np.testing.assert_array_equal(got, value)


def test_the_tests_writer_reproduces_tensorflows_bytes(tmp_path):
    write_checkpoint(variables(), tmp_path / f"model.ckpt-{STEP}")
    for suffix in (".index", ".data-00000-of-00001"):
        assert (tmp_path / f"model.ckpt-{STEP}{suffix}").read_bytes() == (
            FIXTURE / f"model.ckpt-{STEP}{suffix}"
        ).read_bytes()


@pytest.fixture
def copy(tmp_path):
    for path in FIXTURE.iterdir():
        shutil.copy(path, tmp_path / path.name)
    return tmp_path / PREFIX.name


def test_a_truncated_or_foreign_index_is_named(copy):
    index = copy.with_name(copy.name + ".index")
    index.write_bytes(index.read_bytes()[:-10])
    with pytest.raises(
        TFCheckpointError, match=rf"{index.name}: not a readable TensorFlow checkpoint index \(no table"
    ):
        CheckpointReader(copy)
    index.write_bytes(b"\x00" * 200)
    with pytest.raises(TFCheckpointError, match="no table footer"):
        CheckpointReader(copy)
    index.unlink()
    with pytest.raises(TFCheckpointError, match=rf"{index.name}: not found"):
        CheckpointReader(copy)


def test_missing_or_truncated_data_is_named_when_read(copy):
    data = copy.with_name(copy.name + ".data-00000-of-00001")
    data.write_bytes(data.read_bytes()[:100])
    reader = CheckpointReader(copy)
    assert reader.tensor("MobilenetV2/Conv/BatchNorm/beta").shape == (4,)  # what lies before the cut still reads
    with pytest.raises(TFCheckpointError, match=r"data-00000-of-00001: truncated \(logits/semantic/biases"):
        reader.tensor("logits/semantic/biases")
    data.unlink()
    with pytest.raises(TFCheckpointError, match="data-00000-of-00001: not found"):
        CheckpointReader(copy).tensor("global_step")
