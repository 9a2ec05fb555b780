import keras
import numpy as np
import pytest

import keras_unitscale as ku
from roundtrip import assert_config_roundtrip, assert_keras_roundtrip
from scale_utils import assert_near, assert_unit, layer_stds, normal


def test_dense_is_unit_scaled():
    layer = ku.layers.Dense(512, constraint=None)
    out, (gx,), weights = layer_stds(layer, normal((256, 1024)))
    assert_unit(out, "output")
    assert_unit(gx, "input grad")
    for path, s in weights.items():
        assert_unit(s, path)


def test_dense_default_constraint_and_activation():
    layer = ku.layers.Dense(512, activation="gelu")
    out, (gx,), weights = layer_stds(layer, normal((256, 1024)))
    assert_unit(out, "output")
    fwd, bwd = ku.ops.ACTIVATION_SCALES["gelu"]
    assert_near(gx, (512 / 1024) ** 0.5 * fwd / bwd, 0.1, "input grad")
    # to_output_scale ties GELU's gradient scale to its forward one: fwd / bwd = 1.15.
    assert_near(weights[layer.kernel.path], fwd / bwd, 0.1, "kernel grad")


def test_dense_readout():
    layer = ku.layers.Dense(512, readout=True)
    out, (gx,), _ = layer_stds(layer, normal((256, 1024)))
    assert_near(out, 1024**-0.5, 0.004, "readout output")
    assert_unit(gx, "input grad")


def test_readout_output_mult_multiplies_forward_only(tmp_path):
    # u-muP's output multiplier on the readout: the logits (bias included) times 3, every
    # gradient as without it; saved and refused off a readout.
    x = normal((256, 64))
    plain = ku.layers.Dense(16, readout=True)
    plain.build(x.shape)
    plain.bias.assign(np.linspace(-1, 1, 16).astype("float32"))
    tripled = ku.layers.Dense(16, readout=True, output_mult=3.0)
    tripled.build(x.shape)
    tripled.set_weights(plain.get_weights())
    np.testing.assert_allclose(np.asarray(tripled(x)), 3 * np.asarray(plain(x)), rtol=1e-5,
                               atol=1e-6)
    grads = [layer_stds(layer, x) for layer in (plain, tripled)]
    assert grads[1][1][0] == pytest.approx(grads[0][1][0], rel=1e-5)  # input gradient
    for (path, s0), s1 in zip(grads[0][2].items(), grads[1][2].values(), strict=True):
        assert s1 == pytest.approx(s0, rel=1e-5), path
    clone = assert_config_roundtrip(tripled)
    assert clone.output_mult == 3.0
    assert_keras_roundtrip(tripled, normal((3, 64)), tmp_path)
    with pytest.raises(ValueError, match="output_mult.*readout=True"):
        ku.layers.Dense(16, output_mult=2.0)
    with pytest.raises(ValueError, match="output_mult"):
        ku.layers.Dense(16, readout=True, output_mult=0.0)


def test_dense_matches_keras_dense_up_to_the_scale():
    x = normal((4, 16))
    ours = ku.layers.Dense(3, use_bias=False)
    ours.build((4, 16))
    plain = keras.layers.Dense(3, use_bias=False)
    plain.build((4, 16))
    plain.kernel.assign(ours.kernel.value)
    np.testing.assert_allclose(np.asarray(ours(x)), np.asarray(plain(x)) / 4.0, rtol=1e-5)


def test_dense_propagates_masks():
    inputs = keras.Input((None,), dtype="int32")
    h = ku.layers.Embedding(10, 8, mask_zero=True)(inputs)
    out = ku.layers.Dense(4)(h)
    assert out._keras_mask is not None


def test_dense_roundtrip(tmp_path):
    layer = ku.layers.Dense(8, activation="silu", constraint="gmean", name="d")
    clone = assert_config_roundtrip(layer)
    assert clone.activation == "silu" and clone.constraint == "gmean"
    assert_keras_roundtrip(layer, normal((3, 5)), tmp_path)


@pytest.mark.parametrize("units", [0, -3, 2.5, None])
def test_bad_units(units):
    with pytest.raises(ValueError, match="`units` must be a positive integer"):
        ku.layers.Dense(units)


def test_bad_constraint_and_activation():
    with pytest.raises(ValueError, match="`constraint` must be one of"):
        ku.layers.Dense(4, constraint="unit")
    with pytest.raises(ValueError, match="`activation='softmax'` turns outputs into probab"):
        ku.layers.Dense(4, activation="softmax")
    with pytest.raises(ValueError, match="`activation` must be a Keras activation"):
        ku.layers.Dense(4, activation="no_such_activation")


def test_integer_and_rank_one_inputs_are_rejected():
    with pytest.raises(ValueError, match="`inputs` must be a floating-point tensor"):
        ku.layers.Dense(4)(np.ones((2, 3), "int32"))
    with pytest.raises(ValueError, match="`inputs` must have rank >= 2"):
        ku.layers.Dense(4)(np.ones((3,), "float32"))


def test_any_elementwise_keras_activation(tmp_path):
    for spec in ("elu", "softplus", keras.activations.mish):
        out, (gx,), _ = layer_stds(
            ku.layers.Dense(512, activation=spec, constraint=None), normal((256, 1024))
        )
        assert_unit(out, f"{spec} output")
        assert_unit(gx, f"{spec} input grad")
        assert_keras_roundtrip(ku.layers.Dense(3, activation=spec), normal((2, 5)), tmp_path)


def test_softmax_readout_gives_probabilities_for_keras_losses(tmp_path):
    # The last line of most tutorials: Dense(classes, activation="softmax"), with
    # sparse_categorical_crossentropy on probabilities.
    x = normal((8, 16))
    layer = ku.layers.Dense(3, activation="softmax", readout=True)
    probs = keras.ops.convert_to_numpy(layer(x))
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
    logits = ku.layers.Dense(3, readout=True)
    logits.build(x.shape)
    logits.set_weights(layer.get_weights())
    np.testing.assert_allclose(
        probs, keras.ops.convert_to_numpy(keras.ops.softmax(logits(x))), rtol=1e-5, atol=1e-7
    )
    assert_keras_roundtrip(layer, x, tmp_path)
