import numpy as np
import pytest

import keras_unitscale as ku
from roundtrip import assert_config_roundtrip, assert_keras_roundtrip
from scale_utils import assert_unit, layer_stds


def test_embedding_is_unit_scaled():
    ids = np.random.default_rng(0).integers(0, 1024, (256, 256))
    layer = ku.layers.Embedding(1024, 64)
    out, _, weights = layer_stds(layer, ids)
    assert_unit(out, "output")
    assert_unit(weights[layer.embeddings.path], "table grad")


def test_mask_zero():
    layer = ku.layers.Embedding(10, 4, mask_zero=True)
    ids = np.array([[3, 0, 2]])
    np.testing.assert_array_equal(np.asarray(layer.compute_mask(ids)), [[True, False, True]])
    assert ku.layers.Embedding(10, 4).compute_mask(ids) is None


def test_embedding_roundtrip(tmp_path):
    layer = ku.layers.Embedding(20, 6, mask_zero=True)
    assert_config_roundtrip(layer)
    assert_keras_roundtrip(layer, np.array([[1, 2, 0], [4, 0, 0]], "int32"), tmp_path)


def test_ids_out_of_range_name_the_range():
    layer = ku.layers.Embedding(10, 4)
    with pytest.raises(ValueError, match=r"ids must be in \[0, 10\).*\[0, 12\]"):
        layer(np.array([[0, 12]]))
    with pytest.raises(ValueError, match=r"\[-1, 3\]"):
        layer(np.array([[-1, 3]]))


def test_float_ids_and_bad_sizes():
    with pytest.raises(ValueError, match="must be integer token ids"):
        ku.layers.Embedding(10, 4)(np.array([[1.0]], "float32"))
    with pytest.raises(ValueError, match="`input_dim` must be a positive integer"):
        ku.layers.Embedding(0, 4)
    with pytest.raises(ValueError, match="`output_dim` must be a positive integer"):
        ku.layers.Embedding(10, -1)
