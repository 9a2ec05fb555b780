import keras
import numpy as np
import pytest

import keras_unitscale as ku
from keras_unitscale.backend import set_keras_mask, vjp
from scale_utils import assert_unit, normal


def _keras_loss(**kwargs):
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True, **kwargs)


@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum", "none"])
def test_values_equal_keras(reduction):
    rng = np.random.default_rng(0)
    y, logits = rng.integers(0, 30, (16, 8)), normal((16, 8, 30))
    w = rng.random((16, 8)).astype("float32")
    ours = ku.losses.SparseCategoricalCrossentropy(reduction=reduction)(y, logits, sample_weight=w)
    theirs = _keras_loss(reduction=reduction)(y, logits, sample_weight=w)
    np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs), rtol=1e-6, atol=1e-6)


def test_ignore_class_and_label_shapes_equal_keras():
    rng = np.random.default_rng(1)
    y, logits = rng.integers(0, 5, (32, 1)), normal((32, 5))
    y[::3] = -1
    ours = ku.losses.SparseCategoricalCrossentropy(ignore_class=-1)(y, logits)
    theirs = _keras_loss(ignore_class=-1)(y, logits)
    np.testing.assert_allclose(float(ours), float(theirs), rtol=1e-6)


def test_logit_gradient_is_unit_for_any_batch():
    loss = ku.losses.SparseCategoricalCrossentropy()
    for batch in (64, 1024):
        y = np.random.default_rng(batch).integers(0, 512, batch)
        _, pull = vjp(lambda l: loss(y, l), normal((batch, 512)) * 0.05)
        assert_unit(float(np.std(np.asarray(pull(np.float32(1.0))[0]))), f"grad, batch {batch}")


def test_keras_mask_on_predictions_is_honoured():
    rng = np.random.default_rng(2)
    y, logits = rng.integers(0, 64, (32, 16)), normal((32, 16, 64)) * 0.05
    mask = np.arange(16)[None] < rng.integers(4, 16, (32, 1))
    loss = ku.losses.SparseCategoricalCrossentropy()

    def masked(l):
        set_keras_mask(l, keras.ops.convert_to_tensor(mask))
        return loss(y, l)

    value, pull = vjp(masked, logits)
    theirs = _keras_loss()(y, logits, sample_weight=mask.astype("float32") * mask.size / mask.sum())
    np.testing.assert_allclose(float(value), float(theirs), rtol=1e-5)
    g = np.asarray(pull(np.float32(1.0))[0])
    assert_unit(float(np.std(g[mask])), "grad at valid tokens")


def test_loss_config_roundtrip():
    loss = ku.losses.SparseCategoricalCrossentropy(ignore_class=0, name="ce")
    clone = ku.losses.SparseCategoricalCrossentropy.from_config(loss.get_config())
    assert clone.ignore_class == 0 and clone.name == "ce" and clone.from_logits is True
    probs = ku.losses.SparseCategoricalCrossentropy(from_logits=False)
    assert ku.losses.SparseCategoricalCrossentropy.from_config(probs.get_config()).from_logits is False


def test_bad_arguments():
    with pytest.raises(ValueError, match="`from_logits` must be True or False"):
        ku.losses.SparseCategoricalCrossentropy(from_logits=None)
    with pytest.raises(ValueError, match="`y_true` must hold integer class ids"):
        ku.losses.SparseCategoricalCrossentropy()(np.array(["a", "b"]), normal((2, 3)))


def test_probabilities_give_keras_value_and_the_same_logit_gradient():
    # from_logits=False on softmax(z): Keras' value; the gradient reaching z is the unit
    # one that from_logits=True gives on z itself.
    rng = np.random.default_rng(7)
    y, z = rng.integers(0, 40, (64,)), normal((64, 40), seed=8)
    probs = keras.ops.softmax(z)
    ours = ku.losses.SparseCategoricalCrossentropy(from_logits=False)
    theirs = keras.losses.SparseCategoricalCrossentropy(from_logits=False)
    np.testing.assert_allclose(float(ours(y, probs)), float(theirs(y, probs)), rtol=1e-6)
    _, pull_p = vjp(lambda z: ours(y, keras.ops.softmax(z)), z)
    _, pull_z = vjp(lambda z: ku.losses.SparseCategoricalCrossentropy()(y, z), z)
    via_probs = np.asarray(pull_p(np.float32(1.0))[0])
    via_logits = np.asarray(pull_z(np.float32(1.0))[0])
    np.testing.assert_allclose(via_probs, via_logits, rtol=1e-4, atol=1e-5)
    assert_unit(float(np.std(via_probs)), "logit grad through the softmax")
    with pytest.raises(ValueError, match="`from_logits` must be True or False"):
        ku.losses.SparseCategoricalCrossentropy(from_logits="yes")


def test_softmax_readout_model_trains_with_the_default_loss():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(9)
    x = rng.standard_normal((256, 8)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")
    inputs = keras.Input((8,))
    h = ku.layers.Dense(32, activation="relu")(inputs)
    model = ku.models.UnitScaledModel(
        inputs, ku.layers.Dense(2, activation="softmax", readout=True)(h)
    )
    model.compile(learning_rate=3e-2, metrics=["accuracy"])
    assert model.loss.from_logits is False
    history = model.fit(x, y, epochs=15, batch_size=64, verbose=0).history
    assert history["accuracy"][-1] > 0.9, history
    probs = np.asarray(model.predict(x[:4], verbose=0))
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
