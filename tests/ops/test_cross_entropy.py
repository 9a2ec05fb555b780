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


def _keras_loss_and_grad(labels, logits, weights):
    def f(z):
        return keras.ops.sum(
            keras.ops.sparse_categorical_crossentropy(labels, z, from_logits=True) * weights
        )

    out, pull = vjp(f, logits)
    return np.asarray(out), np.asarray(pull(np.float32(1.0))[0])


def test_own_backward_is_keras_gradient_times_the_scale():
    # Static count (plain mean) and run-time count (a mask): the gradient is Keras' own
    # gradient of the same mean, times count * V / sqrt(V - 1), to float rounding.
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 97, (6, 10))
    logits = normal((6, 10, 97), seed=4) * 2.0
    mask = rng.random((6, 10)) < 0.6
    factor = 97 / np.sqrt(96)
    for m in (None, mask):
        count = labels.size if m is None else int(mask.sum())
        weights = np.ones(labels.shape, "float32") if m is None else mask.astype("float32")
        value, pull = vjp(lambda z: uops.sparse_softmax_cross_entropy(labels, z, mask=m), logits)
        ours = np.asarray(pull(np.float32(1.0))[0])
        total, grad = _keras_loss_and_grad(labels, logits, weights)
        np.testing.assert_allclose(float(value), float(total) / count, rtol=1e-6)
        np.testing.assert_allclose(ours, grad * factor, rtol=1e-5, atol=1e-7)


def test_the_fused_op_is_keras_gradient_times_the_scale():
    # The op 16-bit logits take, run in float32 to compare exactly, static and run-time scale.
    from keras_unitscale.ops.cross_entropy import fused_cross_entropy

    rng = np.random.default_rng(11)
    labels = rng.integers(0, 97, (6, 10))
    logits = normal((6, 10, 97), seed=12) * 2.0
    weights = np.ones(labels.shape, "float32")
    total, grad = _keras_loss_and_grad(labels, logits, weights)
    for scale in (3.5, keras.ops.convert_to_tensor(3.5)):
        value, pull = vjp(lambda z: keras.ops.sum(fused_cross_entropy(labels, z, scale)), logits)
        np.testing.assert_allclose(float(value), float(total), rtol=1e-6)
        np.testing.assert_allclose(np.asarray(pull(np.float32(1.0))[0]), 3.5 * grad,
                                   rtol=1e-5, atol=1e-7)


def test_16_bit_logits_get_16_bit_gradients_and_a_float32_loss():
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 64, (32,))
    logits = keras.ops.cast(normal((32, 64), seed=6), "bfloat16")
    value, pull = vjp(lambda z: uops.per_token_cross_entropy(labels, z), logits)
    grad = pull(keras.ops.ones((32,), "float32"))[0]
    assert keras.backend.standardize_dtype(value.dtype) == "float32"
    assert keras.backend.standardize_dtype(grad.dtype) == "bfloat16"
    reference = keras.ops.sparse_categorical_crossentropy(
        labels, keras.ops.cast(logits, "float32"), from_logits=True
    )
    np.testing.assert_allclose(np.asarray(value), np.asarray(reference), rtol=1e-6)
