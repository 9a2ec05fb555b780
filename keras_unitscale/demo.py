"""The main job of `make demo`: unit scaling, shown on a small model.

1. Build the same small network twice, from `keras_unitscale.layers` and from
   `keras.layers`, and print per layer the std of its activations and of its gradients at
   initialisation, side by side: ours sit near one, the plain model's drift with depth.
2. Train both on generated data (a learnable bag-of-words task) and print their losses.
"""

import time

import keras
import numpy as np

import keras_unitscale as ku
from keras_unitscale.analysis import track_scales

VOCAB, LENGTH, WIDTH, CLASSES, DEPTH = 512, 32, 128, 4, 4


def make_data(n, seed=0):
    """Token sequences labelled by the vocabulary quarter their tokens fall in most often."""
    rng = np.random.default_rng(seed)
    x = rng.integers(1, VOCAB, (n, LENGTH)).astype("int32")
    quarter = (x - 1) * CLASSES // (VOCAB - 1)
    counts = np.stack([(quarter == k).sum(axis=1) for k in range(CLASSES)], axis=1)
    y = np.argmax(counts + 0.1 * rng.random(counts.shape), axis=1).astype("int32")
    return x, y


def build_model(unit_scaled):
    """Embedding -> DEPTH residual MLP blocks -> norm -> pooled -> Dense -> readout."""
    L = ku.layers if unit_scaled else keras.layers
    inputs = keras.Input((LENGTH,), dtype="int32", name="token_ids")
    x = L.Embedding(VOCAB, WIDTH, name="embedding")(inputs)
    taus = [t for _, t in ku.ops.transformer_residual_taus(DEPTH)]
    for i in range(DEPTH):
        if unit_scaled:
            x = ku.layers.Residual(ku.layers.MLP(2 * WIDTH), tau=taus[i], name=f"block_{i}")(x)
        else:
            h = keras.layers.Dense(2 * WIDTH, activation="gelu", name=f"block_{i}_up")(x)
            h = keras.layers.Dense(WIDTH, name=f"block_{i}_down")(h)
            x = keras.layers.Add(name=f"block_{i}")([x, h])
    x = L.LayerNormalization(name="norm")(x)
    x = keras.layers.GlobalAveragePooling1D(name="pool")(x)
    x = L.Dense(WIDTH, activation="gelu", name="hidden")(x)
    if unit_scaled:
        outputs = ku.layers.Dense(CLASSES, readout=True, name="logits")(x)
        return ku.models.UnitScaledModel(inputs, outputs, name="unit_scaled")
    return keras.Model(inputs, keras.layers.Dense(CLASSES, name="logits")(x), name="plain")


def scale_comparison(x, y):
    """Per-layer forward/backward std of both models at initialisation, as text."""
    ours = track_scales(build_model(True), x, y, loss=ku.losses.SparseCategoricalCrossentropy())
    plain = track_scales(
        build_model(False), x, y,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    lines = [f"{'layer':<12}{'direction':<11}{'unit-scaled std':>16}{'keras std':>12}"]
    plain_rows = {(r["layer"].split("/")[0], r["direction"]): r["std"] for r in plain}
    for row in ours:
        name = row["layer"].split("/")[0]
        other = plain_rows.get((name, row["direction"]))
        other = "-" if other is None else f"{other:.3g}"
        lines.append(f"{name:<12}{row['direction']:<11}{row['std']:>16.3g}{other:>12}")
    return "\n".join(lines)


def train_both(x, y, x_val, y_val, epochs):
    results = {}
    for unit_scaled in (True, False):
        keras.utils.set_random_seed(0)
        model = build_model(unit_scaled)
        if unit_scaled:
            model.compile(metrics=["accuracy"], jit_compile=True)
        else:
            model.compile(
                optimizer=keras.optimizers.AdamW(1e-3, weight_decay=0.0),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=["accuracy"],
                jit_compile=True,
            )
        start = time.time()
        model.fit(x, y, batch_size=64, epochs=epochs, verbose=2)
        loss, acc = model.evaluate(x_val, y_val, verbose=0)
        results[model.name] = (loss, acc, time.time() - start)
    return results


def main(epochs=3):
    print(f"keras-unitscale {ku.__version__} on Keras {keras.__version__}, "
          f"backend {keras.backend.backend()}\n")
    x, y = make_data(4096)
    x_val, y_val = make_data(1024, seed=1)
    print("Scales at initialisation (one batch of 256; backward = loss gradient):")
    keras.utils.set_random_seed(0)
    print(scale_comparison(x[:256], y[:256]))
    print("\nTraining both on generated data:")
    for name, (loss, acc, seconds) in train_both(x, y, x_val, y_val, epochs).items():
        print(f"{name:<12} validation loss {loss:.4f}  accuracy {acc:.3f}  ({seconds:.1f} s)")
