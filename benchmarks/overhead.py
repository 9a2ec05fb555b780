"""Training-step time of a unit-scaled stack against the same stack from `keras.layers`.

Usage: python benchmarks/overhead.py [--backend tensorflow|jax|both] [--steps 30]

Both models are compiled with XLA (`jit_compile=True`) and trained on the same batch; the
timed steps of the two models are interleaved (ABAB...) so that a busy machine slows both
alike, and the ratio of medians is printed (goal: at most 1.05 on CPU).
"""

import argparse
import json
import time

from _child import measure_in_children, options_of

BATCH, WIDTH, DEPTH, CLASSES = 256, 512, 4, 16


def build(unit_scaled):
    import keras

    import keras_unitscale as ku

    inputs = keras.Input((WIDTH,))
    x = inputs
    if unit_scaled:
        for tau_attn, tau_mlp in ku.ops.transformer_residual_taus(DEPTH // 2):
            for tau in (tau_attn, tau_mlp):
                h = ku.layers.LayerNormalization(center=False, scale=False)(x)
                x = ku.layers.Residual(ku.layers.MLP(2 * WIDTH, use_bias=True), tau=tau)(h)
        x = ku.layers.LayerNormalization(center=False, scale=False)(x)
        outputs = ku.layers.Dense(CLASSES, readout=True)(x)
        model = keras.Model(inputs, outputs)
        loss = ku.losses.SparseCategoricalCrossentropy()
    else:
        for _ in range(DEPTH):
            h = keras.layers.LayerNormalization(center=False, scale=False)(x)
            h = keras.layers.Dense(2 * WIDTH, activation="gelu")(h)
            x = keras.layers.Add()([x, keras.layers.Dense(WIDTH)(h)])
        x = keras.layers.LayerNormalization(center=False, scale=False)(x)
        outputs = keras.layers.Dense(CLASSES)(x)
        model = keras.Model(inputs, outputs)
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss, jit_compile=True)
    return model


def measure(steps):
    import keras
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.standard_normal((BATCH, WIDTH)).astype("float32")
    y = rng.integers(0, CLASSES, BATCH).astype("int32")
    models = {"unit_scaled": build(True), "keras": build(False)}
    for model in models.values():  # compile and warm up
        for _ in range(3):
            model.train_on_batch(x, y)
    times = {name: [] for name in models}
    for _ in range(steps):
        for name, model in models.items():
            start = time.perf_counter()
            loss = model.train_on_batch(x, y)
            float(np.asarray(loss))  # wait for the result
            times[name].append(time.perf_counter() - start)
    median = {name: float(np.median(t)) for name, t in times.items()}
    return {
        "backend": keras.backend.backend(),
        "ms_unit_scaled": 1e3 * median["unit_scaled"],
        "ms_keras": 1e3 * median["keras"],
        "ratio": median["unit_scaled"] / median["keras"],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="both", choices=["tensorflow", "jax", "both"])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.steps)))
        return
    backends = ["tensorflow", "jax"] if args.backend == "both" else [args.backend]
    print(f"stack: {DEPTH} residual MLP blocks, width {WIDTH}, batch {BATCH}, XLA; "
          f"median of {args.steps} interleaved steps")
    for r in measure_in_children(__file__, backends, options_of(args, ["steps"])):
        print(f"{r['backend']:<11} unit-scaled {r['ms_unit_scaled']:7.2f} ms  "
              f"keras {r['ms_keras']:7.2f} ms  ratio {r['ratio']:.3f}")


if __name__ == "__main__":
    main()
