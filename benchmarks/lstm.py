"""Training-step time of `keras_unitscale.layers.LSTM` (or `GRU`) relative to Keras' own.

The same small model (LSTM -> Dense head, MSE loss, SGD) is trained with `train_on_batch`
(the compiled train step of `model.fit`: XLA via `jit_compile=True` on TensorFlow, `jax.jit`
on JAX) on random data, once with each LSTM. Timed rounds of `--steps` steps alternate
between the two models; the reported ratio is the median of the per-round ratios (ours /
Keras), robust to other load on the machine. Each backend runs in its own subprocess.

    .venv/bin/python benchmarks/lstm.py                    # LSTM, both backends
    .venv/bin/python benchmarks/lstm.py --backend jax --seq 128
    .venv/bin/python benchmarks/lstm.py --layer gru
"""

import argparse
import json
import time

from _child import measure_in_children, options_of


def _measure(args):
    import keras
    import numpy as np

    import keras_unitscale as ku

    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.batch, args.seq, args.features)).astype("float32")
    y = rng.standard_normal((args.batch, args.seq, 1)).astype("float32")

    def model(lstm_cls):
        m = keras.Sequential(
            [
                keras.Input((args.seq, args.features)),
                lstm_cls(args.units, return_sequences=True),
                keras.layers.Dense(1),
            ]
        )
        m.compile(optimizer="sgd", loss="mse", jit_compile=True)
        for _ in range(3):  # compile and warm up
            m.train_on_batch(x, y)
        return m

    layer = args.layer.upper()
    models = {
        "ours": model(getattr(ku.layers, layer)),
        "keras": model(getattr(keras.layers, layer)),
    }
    times = {name: [] for name in models}
    for _ in range(args.rounds):
        for name, m in models.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                m.train_on_batch(x, y)
            times[name].append((time.perf_counter() - start) / args.steps)
    ratios = sorted(o / k for o, k in zip(times["ours"], times["keras"]))
    return {
        "backend": keras.backend.backend(),
        "layer": layer,
        "ms_per_step_ours": 1e3 * float(np.median(times["ours"])),
        "ms_per_step_keras": 1e3 * float(np.median(times["keras"])),
        "ratio": ratios[len(ratios) // 2],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["tensorflow", "jax"], action="append")
    parser.add_argument("--layer", choices=["lstm", "gru"], default="lstm")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--features", type=int, default=128)
    parser.add_argument("--units", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10, help="train steps per timed round")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_measure(args)))
        return
    keys = ["layer", "batch", "seq", "features", "units", "steps", "rounds"]
    for r in measure_in_children(__file__, args.backend or ["tensorflow", "jax"],
                                 options_of(args, keys)):
        print(
            f"{r['layer']} {r['backend']:>10}: ours {r['ms_per_step_ours']:.1f} ms/step, "
            f"keras {r['ms_per_step_keras']:.1f} ms/step, ratio {r['ratio']:.3f} "
            f"(batch {args.batch}, seq {args.seq}, features {args.features}, "
            f"units {args.units})"
        )


if __name__ == "__main__":
    main()
