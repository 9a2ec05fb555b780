"""End-to-end: a stack of unit-scaled layers trains under XLA on both backends."""

import keras
import numpy as np
import pytest

import keras_unitscale as ku


def _stack(vocab=64, width=64):
    inputs = keras.Input((12,), dtype="int32")
    x = ku.layers.Embedding(vocab, width, mask_zero=True)(inputs)
    x = ku.layers.Residual(ku.layers.MLP(2 * width, activation="gelu"), tau=0.5)(x)
    x = ku.layers.LayerNormalization(center=False, scale=False)(x)
    x = ku.layers.Dropout(0.1)(x)
    x = keras.layers.GlobalAveragePooling1D()(x)
    x = ku.layers.Dense(width, activation="silu")(x)
    outputs = ku.layers.Dense(4, readout=True)(x)
    return keras.Model(inputs, outputs)


def _data(n=512, seed=0):
    # The label is the quarter of the vocabulary the tokens fall in most often: learnable
    # from the pooled bag of words.
    rng = np.random.default_rng(seed)
    x = rng.integers(1, 64, (n, 12)).astype("int32")
    counts = np.stack([((x - 1) // 16 == k).sum(axis=1) for k in range(4)], axis=1)
    y = np.argmax(counts + 0.1 * rng.random(counts.shape), axis=1).astype("int32")
    return x, y


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_stack_trains_under_xla(policy):
    keras.config.set_dtype_policy(policy)
    x, y = _data()
    model = _stack()
    model.compile(
        # Unit-scaled weights have std 1, so Adam's steps must be larger than for a
        # standard model whose weights are ~ fan_in ** -0.5.
        optimizer=keras.optimizers.Adam(3e-2),
        loss=ku.losses.SparseCategoricalCrossentropy(),
        jit_compile=True,
    )
    before = model.evaluate(x, y, verbose=0)
    history = model.fit(x, y, batch_size=64, epochs=6, verbose=0)
    after = model.evaluate(x, y, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert after < 0.5 * before, (before, after)
    if policy == "mixed_bfloat16":
        assert model.layers[-1].compute_dtype == "bfloat16"
        assert model.layers[-1].kernel.dtype == "float32"


def _fit_small_model(policy):
    keras.config.set_dtype_policy(policy)
    keras.utils.set_random_seed(0)
    x, y = _data()
    inputs = keras.Input((12,), dtype="int32")
    h = ku.layers.Embedding(64, 64, mask_zero=True)(inputs)
    h = ku.layers.Residual(ku.layers.MLP(128), tau=0.5)(h)
    h = keras.layers.GlobalAveragePooling1D()(ku.layers.LayerNormalization()(h))
    model = ku.models.UnitScaledModel(inputs, ku.layers.Dense(4, readout=True)(h))
    # u-muP's AdamW at 0.25: the hidden weights (fan-in 64) and the table (width 64) take
    # the steps a single global rate of 3e-2 gave them before the per-weight rules.
    model.compile(learning_rate=0.25, jit_compile=True)
    before = model.evaluate(x, y, verbose=0)
    history = model.fit(x, y, batch_size=64, epochs=7, verbose=0)  # 56 steps
    return model, before, history.history["loss"], model.evaluate(x, y, verbose=0)


def test_mixed_float16_trains_without_loss_scaling_like_float32():
    model, before, losses, after = _fit_small_model("mixed_float16")
    assert not isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert model.layers[-1].compute_dtype == "float16"
    assert np.all(np.isfinite(losses))
    assert after < 0.5 * before
    # No step was skipped or poisoned by an fp16 overflow: weights finite, and the run
    # follows float32's to within 2% of the final loss.
    assert all(np.all(np.isfinite(keras.ops.convert_to_numpy(w))) for w in model.weights)
    _, _, _, after_fp32 = _fit_small_model("float32")
    assert abs(after - after_fp32) < 0.02 * after_fp32, (after, after_fp32)
