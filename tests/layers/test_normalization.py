import keras
import numpy as np
import pytest

import keras_unitscale as ku
from roundtrip import assert_config_roundtrip, assert_keras_roundtrip
from scale_utils import assert_unit, layer_stds, normal


@pytest.mark.parametrize("cls", [ku.layers.LayerNormalization, ku.layers.RMSNormalization])
def test_norm_layers_are_unit_scaled(cls):
    layer = cls()
    out, (gx,), weights = layer_stds(layer, normal((256, 1024)))
    assert_unit(out, "output")
    assert_unit(gx, "input grad")
    assert weights, "the layer learns a gain by default"
    for path, s in weights.items():
        assert_unit(s, path)


def test_layer_norm_matches_keras_forward():
    x = normal((8, 32)) * 2 + 3
    ours = ku.layers.LayerNormalization(epsilon=1e-3)(x)
    theirs = keras.layers.LayerNormalization(epsilon=1e-3)(x)
    np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs), atol=1e-5)


def test_without_learnt_parameters():
    layer = ku.layers.LayerNormalization(center=False, scale=False)
    layer.build((2, 8))
    assert layer.trainable_weights == []


@pytest.mark.parametrize("cls", [ku.layers.LayerNormalization, ku.layers.RMSNormalization])
def test_norm_roundtrip(cls, tmp_path):
    layer = cls(epsilon=1e-4)
    assert_config_roundtrip(layer)
    assert_keras_roundtrip(layer, normal((3, 7)), tmp_path)


def test_bad_epsilon():
    with pytest.raises(ValueError, match="`epsilon` must be a positive float"):
        ku.layers.RMSNormalization(epsilon=0)


def test_keras_arguments():
    x = normal((4, 6))
    # axis: the last one only, however it is written.
    for axis in (-1, 1, [-1]):
        ku.layers.LayerNormalization(axis=axis)(x)
    with pytest.raises(ValueError, match="`axis` must be the last axis"):
        ku.layers.LayerNormalization(axis=0)(x)
    with pytest.raises(ValueError, match="`axis` must be the last axis"):
        ku.layers.LayerNormalization(axis=(0, 1))
    for eps in (float("nan"), float("inf"), 0.0, True):
        with pytest.raises(ValueError, match="`epsilon` must be a positive float"):
            ku.layers.LayerNormalization(epsilon=eps)
    # rms_scaling=True is RMSNormalization, as in Keras.
    rms = ku.layers.LayerNormalization(rms_scaling=True)(x)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(rms),
        keras.ops.convert_to_numpy(ku.layers.RMSNormalization(epsilon=1e-3)(x)), rtol=1e-6,
    )
    layer = ku.layers.LayerNormalization(gamma_regularizer=keras.regularizers.L2(1.0),
                                         beta_constraint="non_neg", gamma_initializer="zeros")
    layer(x)
    assert len(layer.losses) == 1 and float(keras.ops.convert_to_numpy(layer.losses[0])) == 0.0
    clone = ku.layers.LayerNormalization.from_config(layer.get_config())
    assert isinstance(clone.gamma_regularizer, keras.regularizers.L2)
    assert ku.layers.RMSNormalization.from_config(
        ku.layers.RMSNormalization(axis=-1).get_config()
    ).axis == -1
