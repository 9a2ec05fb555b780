import numpy as np
import pytest

import keras_unitscale as ku
from roundtrip import assert_config_roundtrip, assert_keras_roundtrip
from scale_utils import assert_unit, layer_stds, normal


def test_dropout_training_is_unit_and_inference_is_identity():
    layer = ku.layers.Dropout(0.3, seed=1)
    out, (gx,), _ = layer_stds(layer, normal((256, 1024)), training=True)
    assert_unit(out, "output", tol=0.02)
    assert_unit(gx, "grad", tol=0.02)
    x = normal((4, 4))
    np.testing.assert_array_equal(np.asarray(layer(x)), x)


def test_dropout_roundtrip(tmp_path):
    layer = ku.layers.Dropout(0.2, seed=3)
    assert_config_roundtrip(layer)
    assert_keras_roundtrip(layer, normal((2, 5)), tmp_path)


def test_bad_rate():
    with pytest.raises(ValueError, match="`rate` must be a float"):
        ku.layers.Dropout(1.5)
