import keras
import numpy as np

from keras_unitscale import ops as uops
from keras_unitscale.backend import vjp
from scale_utils import assert_unit, fn_stds, normal


def test_value_equals_keras_and_logit_grad_is_unit():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 1024, 256)
    logits = normal((256, 1024)) * 0.05
    expected = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(labels, logits)
    value = uops.sparse_softmax_cross_entropy(labels, logits)
    np.testing.assert_allclose(float(value), float(expected), rtol=1e-6)
    _, (glogits,) = fn_stds(lambda l: uops.sparse_softmax_cross_entropy(labels, l), logits)
    assert_unit(glogits, "logit grad")


def test_mask_and_sample_weight_match_keras():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 50, (8, 16))
    logits = normal((8, 16, 50))
    mask = rng.random((8, 16)) < 0.7
    weights = rng.random((8, 16)).astype("float32")
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    expected = loss(labels, logits, sample_weight=weights * mask)
    ours = uops.sparse_softmax_cross_entropy(labels, logits, sample_weight=weights * mask)
    np.testing.assert_allclose(float(ours), float(expected), rtol=1e-6)
    # With a mask, the mean runs over valid tokens only.
    expected_masked = np.sum(np.asarray(loss.call(labels, logits)) * mask) / mask.sum()
    ours_masked = uops.sparse_softmax_cross_entropy(labels, logits, mask=mask)
    np.testing.assert_allclose(float(ours_masked), expected_masked, rtol=1e-5)


def test_masked_tokens_get_unit_grad_and_padding_none():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 512, (64, 64))
    mask = np.arange(64)[None, :] < rng.integers(8, 64, (64, 1))
    logits = normal((64, 64, 512)) * 0.05
    _, pull = vjp(
        lambda l: uops.sparse_softmax_cross_entropy(labels, l, mask=mask), logits
    )
    g = np.asarray(pull(np.float32(1.0))[0])
    assert_unit(float(np.std(g[mask])), "grad at valid tokens")
    assert np.all(g[~mask] == 0)
