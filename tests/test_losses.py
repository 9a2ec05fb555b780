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
    assert clone.ignore_class == 0 and clone.name == "ce"


def test_bad_arguments():
    with pytest.raises(ValueError, match="`from_logits` must be True"):
        ku.losses.SparseCategoricalCrossentropy(from_logits=False)
    with pytest.raises(ValueError, match="`y_true` must hold integer class ids"):
        ku.losses.SparseCategoricalCrossentropy()(np.array(["a", "b"]), normal((2, 3)))
