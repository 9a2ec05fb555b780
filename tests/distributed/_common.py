"""What the distributed scenarios share: the model, the data and the report.

The scenarios run in fresh processes (virtual devices must be configured before the backend
starts), import this file from their own directory and print one JSON line: the largest
differences between the run on several devices and the run on one.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

NUM_DEVICES = 4
VOCAB, LENGTH, WIDTH, CLASSES = 24, 8, 16, 5
GLOBAL_BATCH, STEPS = 16, 3
LEARNING_RATE = 0.05


def build_model(dropout=0.0, seed=0):
    """A small model with every layer type and two outputs.

    `tokens`: per-token logits carrying the padding mask (the loss's masked mean);
    `sequence`: logits from the first position, without a mask (the loss's plain mean, whose
    count comes from the batch shape).
    """
    import keras

    import keras_unitscale as ku

    keras.utils.set_random_seed(seed)
    L = ku.layers
    ids = keras.Input((LENGTH,), dtype="int32", name="token_ids")
    x = L.Embedding(VOCAB, WIDTH, mask_zero=True, name="embedding")(ids)
    x = L.LSTM(WIDTH, return_sequences=True, name="lstm")(x)
    x = L.LayerNormalization(name="layer_norm")(x)
    x = L.MultiHeadAttention(2, WIDTH // 2, name="attention")(x, x)
    x = L.Residual(L.MLP(2 * WIDTH, activation="silu", gated=True, use_bias=True), tau=0.5,
                   name="residual_mlp")(x)
    x = L.TransformerEncoderBlock(2, 2 * WIDTH, normalization="rms_norm", name="encoder_block")(x)
    x = L.RMSNormalization(name="rms_norm")(x)
    x = L.Dropout(dropout, seed=seed, name="dropout")(x)
    x = L.Dense(WIDTH, activation="gelu", name="dense")(x)
    tokens = L.Dense(VOCAB, readout=True, name="tokens")(x)
    sequence = L.Dense(CLASSES, readout=True, name="sequence")(x[:, 0, :])
    return ku.models.UnitScaledModel(ids, {"tokens": tokens, "sequence": sequence},
                                     name="every_layer")


def compile_model(model):
    import keras

    import keras_unitscale as ku

    # SGD keeps the update linear in the gradient, so weights after a few steps differ by no
    # more than the gradients do (Adam's `g / sqrt(v)` would amplify round-off near zero).
    model.compile(
        optimizer=keras.optimizers.SGD(LEARNING_RATE),
        loss={
            "tokens": ku.losses.SparseCategoricalCrossentropy(),
            "sequence": ku.losses.SparseCategoricalCrossentropy(),
        },
    )


def make_data(balanced, seed=1):
    """`STEPS` global batches: token ids with padding (id 0) at the end of rows, and labels.

    The rows of each replica's share (`GLOBAL_BATCH / NUM_DEVICES` consecutive rows) hold
    the same number of valid tokens when `balanced`, different numbers otherwise: the case
    where the mean of per-replica masked means (Keras' loss under `tf.distribute`) and the
    global masked mean part.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    n, share = GLOBAL_BATCH * STEPS, GLOBAL_BATCH // NUM_DEVICES
    if balanced:
        base = np.linspace(LENGTH, 2, share).round().astype(int)
        lengths = np.concatenate([rng.permutation(base) for _ in range(n // share)])
    else:
        lengths = rng.integers(1, LENGTH + 1, size=n)
        lengths[:share] = LENGTH
    ids = rng.integers(1, VOCAB, size=(n, LENGTH)).astype("int32")
    ids[np.arange(LENGTH)[None, :] >= lengths[:, None]] = 0
    y = {
        "tokens": rng.integers(0, VOCAB, size=(n, LENGTH)).astype("int32"),
        "sequence": rng.integers(0, CLASSES, size=(n,)).astype("int32"),
    }
    return ids, y


def max_differences(reference, other, names):
    """`{name: max |a - b| / max(1, max |a|)}`: absolute near unit, relative above."""
    import numpy as np

    out = {}
    for name, a, b in zip(names, reference, other):
        a, b = np.asarray(a, "float64"), np.asarray(b, "float64")
        out[name] = float(np.max(np.abs(a - b)) / max(1.0, float(np.max(np.abs(a)))))
    return out


def report(**results):
    print("RESULT " + json.dumps(results))
    sys.stdout.flush()
