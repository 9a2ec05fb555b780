import keras
import numpy as np
import pytest

import keras_unitscale as ku
from roundtrip import assert_config_roundtrip, assert_keras_roundtrip
from scale_utils import assert_unit, layer_stds, normal


def test_residual_stack_stays_unit():
    taus = ku.ops.transformer_residual_taus(2)
    layers = [ku.layers.Residual(ku.layers.MLP(512), tau=t) for pair in taus for t in pair]
    model = keras.Sequential(layers)
    out, (gx,), weights = layer_stds(model, normal((256, 256)))
    assert_unit(out, "output")
    assert_unit(gx, "input grad", tol=0.2)
    assert all(np.isfinite(s) and 0.3 < s < 3 for s in weights.values())


def test_residual_roundtrip(tmp_path):
    layer = ku.layers.Residual(ku.layers.Dense(6), tau=0.3)
    clone = assert_config_roundtrip(layer)
    assert isinstance(clone.layer, ku.layers.Dense)
    assert_keras_roundtrip(layer, normal((2, 6)), tmp_path)


def test_bad_residual_arguments():
    with pytest.raises(ValueError, match="`layer` must be a Keras layer"):
        ku.layers.Residual(lambda x: x)
    with pytest.raises(ValueError, match="`tau` must be a non-negative number"):
        ku.layers.Residual(ku.layers.Dense(2), tau=-1)
