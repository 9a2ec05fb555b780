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
