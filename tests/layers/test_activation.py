import keras
import numpy as np
import pytest

import keras_unitscale as ku
from roundtrip import assert_config_roundtrip, assert_keras_roundtrip
from scale_utils import assert_unit, layer_stds, normal


@pytest.mark.parametrize("name", ["gelu", "swish", "tanh"])
def test_activation_layer_is_unit(name):
    out, (gx,), _ = layer_stds(ku.layers.Activation(name, constraint=None), normal((256, 1024)))
    assert_unit(out, "output")
    assert_unit(gx, "grad")


def test_activation_roundtrip(tmp_path):
    layer = ku.layers.Activation("relu")
    assert_config_roundtrip(layer)
    assert_keras_roundtrip(layer, normal((2, 5)), tmp_path)


def test_unknown_activation():
    with pytest.raises(ValueError, match="`activation` must be a Keras activation"):
        ku.layers.Activation("no_such_activation")


def test_any_elementwise_keras_activation_and_softmax(tmp_path):
    x = normal((256, 512))
    for spec in ("elu", keras.activations.mish):
        layer = ku.layers.Activation(spec)
        assert abs(float(np.std(keras.ops.convert_to_numpy(layer(x)))) - 1) < 0.05, spec
        assert_keras_roundtrip(layer, normal((2, 5)), tmp_path)
    probs = keras.ops.convert_to_numpy(ku.layers.Activation("softmax")(x))
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
