"""Training-step time of a unit-scaled transformer block against the same block from Keras.

Ours: `keras_unitscale.layers.TransformerEncoderBlock` (or `TransformerDecoderBlock` with
`--causal`): pre-norm, unit-scaled multi-head attention and GELU MLP, u-muP residual weights.
Keras: the same pre-norm block from `keras.layers.LayerNormalization`, `MultiHeadAttention`,
`Dense` and `Add`. Both: `--blocks` blocks on a float input `[batch, seq, width]`, a Dense
head, MSE loss, Adam, compiled with `jit_compile=True` (XLA on TensorFlow, `jax.jit` on JAX)
and trained with `train_on_batch` on one fixed batch. Timed rounds of `--steps` steps
alternate between the two models; the ratio is the median of the per-round ratios (ours /
Keras). Each backend runs in its own subprocess.

    .venv/bin/python benchmarks/attention.py                       # both backends
    .venv/bin/python benchmarks/attention.py --backend jax --causal
"""

import argparse
import json
import time

from _child import measure_in_children, options_of


def _keras_block(x, args, causal):
    import keras

    heads, width = args.heads, args.width
    h = keras.layers.LayerNormalization(center=False, scale=False)(x)
    h = keras.layers.MultiHeadAttention(heads, width // heads, use_bias=False)(
        h, h, use_causal_mask=causal
    )
    x = keras.layers.Add()([x, h])
    h = keras.layers.LayerNormalization(center=False, scale=False)(x)
    h = keras.layers.Dense(args.hidden, activation="gelu", use_bias=False)(h)
    h = keras.layers.Dense(width, use_bias=False)(h)
    return keras.layers.Add()([x, h])


def _model(args, ours):
    import keras

    import keras_unitscale as ku

    inputs = keras.Input((args.seq, args.width))
    x = inputs
    for i in range(args.blocks):
        if ours:
            block = ku.layers.TransformerDecoderBlock if args.causal else (
                ku.layers.TransformerEncoderBlock
            )
            x = block(args.heads, args.hidden, layer_index=i, num_layers=args.blocks)(x)
        else:
            x = _keras_block(x, args, args.causal)
    outputs = (ku.layers.Dense(1) if ours else keras.layers.Dense(1))(x)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse", jit_compile=True)
    return model


def _measure(args):
    import keras
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.batch, args.seq, args.width)).astype("float32")
    y = rng.standard_normal((args.batch, args.seq, 1)).astype("float32")
    models = {"ours": _model(args, True), "keras": _model(args, False)}
    for m in models.values():  # compile and warm up
        for _ in range(3):
            m.train_on_batch(x, y)
    times = {name: [] for name in models}
    for _ in range(args.rounds):
        for name, m in models.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                loss = m.train_on_batch(x, y)
            float(np.asarray(loss))  # wait for the result
            times[name].append((time.perf_counter() - start) / args.steps)
    ratios = sorted(o / k for o, k in zip(times["ours"], times["keras"]))
    return {
        "backend": keras.backend.backend(),
        "ms_per_step_ours": 1e3 * float(np.median(times["ours"])),
        "ms_per_step_keras": 1e3 * float(np.median(times["keras"])),
        "ratio": ratios[len(ratios) // 2],
    }


_KEYS = ["batch", "seq", "width", "heads", "hidden", "blocks", "steps", "rounds"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["tensorflow", "jax"], action="append")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--blocks", type=int, default=2)
    parser.add_argument("--causal", action="store_true")
    parser.add_argument("--steps", type=int, default=5, help="train steps per timed round")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_measure(args)))
        return
    options = options_of(args, _KEYS) + (["--causal"] if args.causal else [])
    for r in measure_in_children(__file__, args.backend or ["tensorflow", "jax"], options):
        kind = "causal" if args.causal else "bidirectional"
        print(
            f"{r['backend']:>10}: ours {r['ms_per_step_ours']:.1f} ms/step, "
            f"keras {r['ms_per_step_keras']:.1f} ms/step, ratio {r['ratio']:.3f} "
            f"({args.blocks} blocks, batch {args.batch}, seq {args.seq}, width {args.width}, "
            f"heads {args.heads}, hidden {args.hidden}, {kind})"
        )


if __name__ == "__main__":
    main()
