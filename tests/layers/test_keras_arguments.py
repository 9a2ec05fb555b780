"""Keras' weight arguments on our layers: regularizers in `model.losses`, constraints applied
by the optimizer, a warning for initializers that break unit scale, and clear refusals."""

import warnings

import keras
import numpy as np
import pytest

import keras_unitscale as ku
from roundtrip import assert_keras_roundtrip
from scale_utils import normal


def _mha(**kwargs):
    return ku.layers.MultiHeadAttention(num_heads=2, key_dim=4, **kwargs)


def _run(layer, kind):
    if kind == "embedding":
        return layer(np.array([[1, 2, 3]]))
    x = normal((2, 3, 8))
    return layer(x, x) if isinstance(layer, ku.layers.MultiHeadAttention) else layer(x)


CASES = {
    "dense": (lambda **k: ku.layers.Dense(4, **k), "kernel", "bias"),
    "embedding": (lambda **k: ku.layers.Embedding(10, 8, **k), "embeddings", None),
    "attention": (_mha, "kernel", "bias"),
}


@pytest.mark.parametrize("kind", sorted(CASES))
def test_regularizers_add_their_penalties_to_the_losses(kind, tmp_path):
    make, weight, bias = CASES[kind]
    kwargs = {f"{weight}_regularizer": keras.regularizers.L2(0.5),
              "activity_regularizer": keras.regularizers.L1(0.25)}
    if bias:
        kwargs[f"{bias}_regularizer"] = keras.regularizers.L1(2.0)
    layer = make(**kwargs)
    out = _run(layer, kind)
    penalties = [float(keras.ops.convert_to_numpy(p)) for p in layer.losses]
    expected = [0.5 * float(np.sum(np.square(keras.ops.convert_to_numpy(w.value))))
                for w in layer.weights if weight in w.path]
    activity = 0.25 * float(np.sum(np.abs(keras.ops.convert_to_numpy(out)))) / out.shape[0]
    # Biases start at zero: their L1 penalties are zero.
    assert sorted(penalties) == pytest.approx(
        sorted(expected + [activity] + [0.0] * (len(penalties) - len(expected) - 1)), rel=1e-5
    )
    clone = type(layer).from_config(layer.get_config())
    assert isinstance(getattr(clone, f"{weight}_regularizer"), keras.regularizers.L2)
    assert isinstance(clone.activity_regularizer, keras.regularizers.L1)


@pytest.mark.parametrize("kind", sorted(CASES))
def test_constraints_are_applied_after_each_step(kind):
    make, weight, _ = CASES[kind]
    keras.utils.set_random_seed(0)
    layer = make(**{f"{weight}_constraint": "non_neg"})
    if kind == "embedding":
        inputs = keras.Input((3,), dtype="int32")
        x = np.array([[1, 2, 3]] * 4)
        outputs = layer(inputs)
    else:
        inputs = keras.Input((3, 8))
        x = normal((4, 3, 8))
        outputs = layer(inputs, inputs) if kind == "attention" else layer(inputs)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    model.train_on_batch(x, np.ones(tuple(outputs.shape[1:]), "float32")[None].repeat(4, 0))
    for w in layer.weights:
        if weight in w.path:
            assert float(np.min(keras.ops.convert_to_numpy(w.value))) >= 0.0, w.path


@pytest.mark.parametrize("kind", sorted(CASES))
def test_non_unit_initializers_are_warned_about_unit_ones_are_not(kind):
    make, weight, _ = CASES[kind]
    with pytest.warns(UserWarning, match=f"`{weight}_initializer` drew weights of RMS"):
        _run(make(**{f"{weight}_initializer": "glorot_uniform"}), kind)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        _run(make(**{f"{weight}_initializer": keras.initializers.RandomNormal(stddev=1.0)}),
             kind)
        _run(make(), kind)


def test_bad_weight_arguments_name_themselves():
    with pytest.raises(ValueError, match="`kernel_regularizer` must be a Keras regularizer"):
        ku.layers.Dense(3, kernel_regularizer="l7")
    with pytest.raises(ValueError, match="`embeddings_constraint` must be a Keras constraint"):
        ku.layers.Embedding(5, 3, embeddings_constraint="sometimes")
    with pytest.raises(ValueError, match="`attention_axes` must be None"):
        _mha(attention_axes=(1, 2))


def test_layers_with_weight_arguments_round_trip(tmp_path):
    layer = ku.layers.Dense(3, kernel_regularizer="l2", bias_constraint="non_neg")
    assert_keras_roundtrip(layer, normal((2, 5)), tmp_path)


@pytest.mark.parametrize("layer_class", ["LSTM", "GRU"])
def test_recurrent_layers_take_keras_weight_arguments(layer_class, tmp_path):
    make = getattr(ku.layers, layer_class)
    layer = make(4, kernel_regularizer=keras.regularizers.L2(0.5), recurrent_constraint="non_neg",
                 bias_regularizer="l1", activation="tanh", recurrent_activation="sigmoid")
    x = normal((2, 5, 3))
    layer(x)
    kernel = keras.ops.convert_to_numpy(layer.cell.kernel.value)
    penalties = sorted(float(keras.ops.convert_to_numpy(p)) for p in layer.losses)
    assert penalties == pytest.approx(sorted([0.5 * float(np.sum(kernel**2)), 0.0]), rel=1e-5)
    clone = make.from_config(layer.get_config())
    assert isinstance(clone.get_config()["kernel_regularizer"], dict)
    assert layer.get_config()["recurrent_constraint"]["class_name"] == "NonNeg"
    assert_keras_roundtrip(layer, x, tmp_path)
    with pytest.warns(UserWarning, match="`recurrent_kernel_initializer` drew weights of RMS"):
        make(4, recurrent_initializer="orthogonal")(x)
    with pytest.raises(ValueError, match="`activation` must be 'tanh'"):
        make(4, activation="relu")
    with pytest.raises(ValueError, match="`recurrent_activation` must be 'sigmoid'"):
        make(4, recurrent_activation="hard_sigmoid")
    with pytest.raises(ValueError, match="`kernel_regularizer` must be a Keras regularizer"):
        make(4, kernel_regularizer="l7")


def test_gru_reset_after_false_is_refused():
    with pytest.raises(ValueError, match="`reset_after` must be True"):
        ku.layers.GRU(4, reset_after=False)
    ku.layers.GRU(4, reset_after=True)
