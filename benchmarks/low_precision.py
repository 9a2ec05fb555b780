"""Low-precision training: a unit-scaled causal LM against the same model from `keras.layers`.

The same small decoder-only character LM (pre-norm, learned positions, GELU MLP, causal
self-attention) is trained on People's Daily (January 1998 news, `load_peoples_daily`) with the
same budget in each precision: the same number of steps, the same batches in the same order,
the same initial weights (one seed per architecture), so the runs differ only in arithmetic:

- `float32`;
- `fp16`: the `mixed_float16` policy WITHOUT loss scaling (`auto_scale_loss=False`, which is
  `UnitScaledModel.compile`'s default);
- `fp16_ls`: `mixed_float16` with Keras' default dynamic loss scaling (plain model only, a
  reference row);
- `bf16`: the `mixed_bfloat16` policy;
- `fp8`: float32 with every matmul's operands cast to E4M3 and the matmul output gradients to
  E5M2 (`keras_unitscale.precision.simulate_fp8`; for the plain model the same
  `FP8Simulation` is applied inside its `Dense` / `EinsumDense` layers), the readout kept in
  float32 as u-muP keeps its critical matmuls;
- `fp8_all`: the same with the readout in FP8 too.

The unit-scaled model (`keras_unitscale.layers` in a `UnitScaledModel`) trains with
`UnitScaledModel.compile`'s AdamW (no weight decay) at 3e-2, the plain one with Adam at 3e-3:
the best of a float32 sweep at the same budget (`--sweep`; UnitScaledModel's default is 1e-2,
the usual Keras step 1e-3). The FP8 runs cast the attention projections, the MLP and (in
`fp8_all`) the readout; attention's `q k^T` and `p v` stay in the run's own precision in both
models. The plain model computes attention with `keras.layers.MultiHeadAttention`'s explicit
path in every run (its `ops.dot_product_attention` path fails under float16 on JAX's CPU).

Before training, the initial gradients of both models are measured once in float32 on one
training batch (`keras_unitscale.analysis.track_scales` for the gradients at layer outputs,
and the weight gradients directly): the share of nonzero values that FP16 and E5M2 would round
to zero.

Writes `docs/low_precision_<backend>.png` (validation loss curves) and replaces the block
between `<!-- low_precision.py <backend> results: begin -->` and `... end -->` in
`docs/low_precision.md` with the results table; prints the table and the command.

    nice .venv/bin/python benchmarks/low_precision.py --backend tensorflow   # the documented run
    nice .venv/bin/python benchmarks/low_precision.py --backend jax --steps 100 \
        --runs unit/float32,unit/fp16,unit/bf16,unit/fp8,plain/float32,plain/fp16,plain/fp8
    nice .venv/bin/python benchmarks/low_precision.py --backend tensorflow --sweep --eval-every 50
    .venv/bin/python benchmarks/low_precision.py --quick --out-dir /tmp/lp   # smoke test

On a shared 2-core CPU the TensorFlow run takes about 17 minutes (TensorFlow's XLA steps were
about twice as fast as JAX's here; JAX compiles faster).
"""

import argparse
import math
import os
import re
import shlex
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PRECISIONS = {
    # name: (dtype policy, loss scaling, fp8 simulation: None / "keep_readout" / "all")
    "float32": ("float32", False, None),
    "fp16": ("mixed_float16", False, None),
    "fp16_ls": ("mixed_float16", True, None),
    "bf16": ("mixed_bfloat16", False, None),
    "fp8": ("float32", False, "keep_readout"),
    "fp8_all": ("float32", False, "all"),
}
LABELS = {
    "float32": "float32",
    "fp16": "FP16, no loss scaling",
    "fp16_ls": "FP16, Keras loss scaling",
    "bf16": "BF16",
    "fp8": "FP8 sim., readout kept",
    "fp8_all": "FP8 sim., all matmuls",
}
DEFAULT_RUNS = (
    "unit/float32,unit/fp16,unit/bf16,unit/fp8,unit/fp8_all,"
    "plain/float32,plain/fp16,plain/fp16_ls,plain/bf16,plain/fp8,plain/fp8_all"
)
QUICK_RUNS = "unit/float32,unit/fp16,unit/fp8,plain/fp16,plain/fp8"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--backend", choices=["jax", "tensorflow"], default=None,
        help="Keras backend (default: $KERAS_BACKEND, else tensorflow)",
    )
    parser.add_argument("--steps", type=int, default=None, help="training steps per run")
    parser.add_argument("--quick", action="store_true", help="tiny model and run (smoke test)")
    parser.add_argument("--runs", default=None, help=f"comma list (default {DEFAULT_RUNS})")
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--seq", type=int, default=None)
    parser.add_argument("--width", type=int, default=None)
    parser.add_argument("--blocks", type=int, default=None)
    parser.add_argument("--heads", type=int, default=None)
    parser.add_argument("--vocab", type=int, default=None, help="most frequent characters kept")
    parser.add_argument("--eval-every", type=int, default=None)
    parser.add_argument("--val-windows", type=int, default=None)
    parser.add_argument(
        "--lr-unit", type=float, default=3e-2,
        help="AdamW step of the unit-scaled model (best of the float32 sweep; "
        "UnitScaledModel's default is 1e-2)",
    )
    parser.add_argument(
        "--lr-plain", type=float, default=3e-3,
        help="Adam step of the plain model (best of the float32 sweep)",
    )
    parser.add_argument(
        "--sweep", action="store_true",
        help="only the float32 learning-rate sweep (--sweep-unit, --sweep-plain); prints a table",
    )
    parser.add_argument("--sweep-unit", default="1e-2,3e-2,1e-1")
    parser.add_argument("--sweep-plain", default="1e-3,3e-3")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out-dir", default=os.path.join(ROOT, "docs"), help="where the PNG goes"
    )
    parser.add_argument(
        "--doc", default=None,
        help="markdown file whose results block is replaced (default docs/low_precision.md; "
        "'none' to skip; skipped with --quick unless given)",
    )
    args = parser.parse_args(argv)
    full = dict(blocks=2, batch=16, seq=64, width=128, heads=4, vocab=1000, steps=250,
                eval_every=25, val_windows=128, runs=DEFAULT_RUNS)
    quick = dict(blocks=1, batch=4, seq=16, width=32, heads=2, vocab=200, steps=4, eval_every=2,
                 val_windows=8, runs=QUICK_RUNS)
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.doc is None:
        args.doc = "none" if args.quick else os.path.join(ROOT, "docs", "low_precision.md")
    args.runs = [r.strip() for r in args.runs.split(",") if r.strip()]
    for run in args.runs:
        model, _, precision = run.partition("/")
        if model not in ("unit", "plain") or precision not in PRECISIONS:
            parser.error(f"unknown run {run!r}: expected unit|plain / {'|'.join(PRECISIONS)}")
    return args


# --------------------------------------------------------------------------------------------
# Data


def load_data(args):
    """Character ids of People's Daily as `(x_train, y_train, x_val, y_val, vocab_size)`.

    Each split's lines are joined with `[END]` between them and cut into non-overlapping
    windows of `seq + 1` ids; the training windows are shuffled once with `seed` and taken in
    that order (the same order for every run), the validation windows are evenly spaced.
    """
    import numpy as np

    from keras_unitscale.datasets import load_peoples_daily
    from keras_unitscale.tokenizers import CharacterTokenizer

    train, val, _ = load_peoples_daily(seed=args.seed)
    if args.quick:
        train, val = train[:400], val[:100]
    tokenizer = CharacterTokenizer.from_corpus(list(train), max_size=args.vocab)
    end = tokenizer.token_to_id("[END]")

    def stream(lines):
        ids = []
        for seq in tokenizer.tokenize(list(lines)):
            ids.extend(int(i) for i in seq)
            ids.append(end)
        return np.asarray(ids, dtype="int32")

    def windows(ids):
        n = (len(ids) - 1) // args.seq
        x = ids[: n * args.seq].reshape(n, args.seq)
        y = ids[1 : n * args.seq + 1].reshape(n, args.seq)
        return x, y

    x_train, y_train = windows(stream(train))
    order = np.random.default_rng(args.seed).permutation(len(x_train))
    x_train, y_train = x_train[order], y_train[order]
    x_val, y_val = windows(stream(val))
    pick = np.linspace(0, len(x_val) - 1, min(args.val_windows, len(x_val))).astype(int)
    return x_train, y_train, x_val[pick], y_val[pick], tokenizer.vocabulary_size()


# --------------------------------------------------------------------------------------------
# Models


def unit_scaled_lm(args, vocab_size):
    """Token + learned position embedding, pre-norm decoder blocks (u-muP residual taus),
    final norm, unit-scaled readout: all `keras_unitscale.layers`, in a `UnitScaledModel`."""
    import keras

    import keras_unitscale as ku

    ids = keras.Input((args.seq,), dtype="int32", name="token_ids")
    x = ku.layers.TokenAndPositionEmbedding(vocab_size, args.seq, args.width, name="embedding")(
        ids
    )
    for i in range(args.blocks):
        x = ku.layers.TransformerDecoderBlock(
            args.heads, 4 * args.width, layer_index=i, num_layers=args.blocks,
            name=f"block_{i}",
        )(x)
    x = ku.layers.LayerNormalization(center=False, scale=False, name="final_norm")(x)
    logits = ku.layers.Dense(vocab_size, use_bias=False, readout=True, name="readout")(x)
    return ku.models.UnitScaledModel(ids, logits, name="unit_scaled_lm")


def plain_lm(args, vocab_size):
    """The same architecture from `keras.layers` with Keras' default initialisers (biases and
    norm gains as Keras has them)."""
    import keras

    class PositionEmbedding(keras.layers.Layer):
        """Adds a learned `[seq, width]` table (glorot-uniform, as KerasHub's)."""

        def build(self, shape):
            self.table = self.add_weight(
                shape=tuple(shape[1:]), initializer="glorot_uniform", name="embeddings"
            )

        def call(self, x):
            return x + keras.ops.cast(self.table, x.dtype)[None]

    class MultiHeadAttention(keras.layers.MultiHeadAttention):
        """Keras' attention through its explicit path (scores einsum, masked softmax, einsum)
        rather than `ops.dot_product_attention`: the same arithmetic, but JAX's CPU kernel
        behind the latter rejects float16 (`'F16_F16_F32' is not supported by dot_general
        on CPU`), so every plain run takes this path."""

        def _compute_attention(self, query, key, value, attention_mask=None, training=None,
                               return_attention_scores=False, **kwargs):
            out, scores = super()._compute_attention(
                query, key, value, attention_mask, training, return_attention_scores=True,
                **kwargs,
            )
            return out, scores if return_attention_scores else None

    ids = keras.Input((args.seq,), dtype="int32", name="token_ids")
    x = keras.layers.Embedding(vocab_size, args.width, name="token_embedding")(ids)
    x = PositionEmbedding(name="position_embedding")(x)
    for i in range(args.blocks):
        h = keras.layers.LayerNormalization(name=f"block_{i}_attention_norm")(x)
        h = MultiHeadAttention(
            args.heads, args.width // args.heads, name=f"block_{i}_attention"
        )(h, h, use_causal_mask=True)
        x = keras.layers.Add(name=f"block_{i}_attention_add")([x, h])
        h = keras.layers.LayerNormalization(name=f"block_{i}_mlp_norm")(x)
        h = keras.layers.Dense(4 * args.width, activation="gelu", name=f"block_{i}_mlp_up")(h)
        h = keras.layers.Dense(args.width, name=f"block_{i}_mlp_down")(h)
        x = keras.layers.Add(name=f"block_{i}_mlp_add")([x, h])
    x = keras.layers.LayerNormalization(name="final_norm")(x)
    logits = keras.layers.Dense(vocab_size, name="readout")(x)
    return keras.Model(ids, logits, name="plain_lm")


def simulate_fp8_plain(model, keep=()):
    """The FP8 simulation of `simulate_fp8`, for `keras.layers.Dense` and `EinsumDense` (the
    projections inside `keras.layers.MultiHeadAttention`): each such layer's `call` is
    replaced by one that casts input and kernel with `cast_forward` (E4M3) and the matmul
    output's gradient with `cast_gradient` (E5M2), then adds the bias and the activation as
    Keras does. Returns the names of the switched layers."""
    import keras

    from keras_unitscale.ops.formats import FP8Simulation

    switched = []
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if not isinstance(layer, (keras.layers.Dense, keras.layers.EinsumDense)):
            continue
        if layer.name in keep:
            continue
        layer.fp8 = FP8Simulation()
        layer.call = _fp8_dense_call(layer)
        switched.append(layer.name)
    model.train_function = model.test_function = model.predict_function = None
    return switched


def _fp8_dense_call(layer):
    import keras
    from keras import ops

    einsum = isinstance(layer, keras.layers.EinsumDense)

    def call(inputs, training=None):
        sim = layer.fp8
        kernel = ops.cast(layer.kernel, inputs.dtype)
        a, w = sim.cast_forward(inputs), sim.cast_forward(kernel)
        y = ops.einsum(layer.equation, a, w) if einsum else ops.matmul(a, w)
        y = sim.cast_gradient(y)
        if layer.bias is not None:
            y = y + ops.cast(layer.bias, y.dtype)
        if layer.activation is not None:
            y = layer.activation(y)
        return y

    return call


def build(kind, precision, args, vocab_size, lr=None):
    """A compiled model for one run; the dtype policy is set only while it is built."""
    import keras

    from keras_unitscale.precision import simulate_fp8

    policy, loss_scaling, fp8 = PRECISIONS[precision]
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        keras.utils.set_random_seed(args.seed)  # the same initial weights in every run
        if kind == "unit":
            model = unit_scaled_lm(args, vocab_size)
            if fp8:
                simulate_fp8(model, keep=("readout",) if fp8 == "keep_readout" else ())
            # docs/low_precision.md's numbers: Keras' AdamW, one rate for every weight (u-muP's
            # per-weight rates, compile()'s default now, are not measured here yet).
            model.compile(optimizer=keras.optimizers.AdamW(lr or args.lr_unit, weight_decay=0.0),
                          jit_compile=True)
        else:
            model = plain_lm(args, vocab_size)
            if fp8:
                simulate_fp8_plain(model, keep=("readout",) if fp8 == "keep_readout" else ())
            model.compile(
                optimizer=keras.optimizers.Adam(lr or args.lr_plain),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                auto_scale_loss=loss_scaling,
                jit_compile=True,
            )
    finally:
        keras.config.set_dtype_policy(previous)
    if kind == "unit":
        assert isinstance(model.optimizer, keras.optimizers.AdamW)
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer) == loss_scaling
    return model


# --------------------------------------------------------------------------------------------
# Training


def train(model, data, args):
    """`args.steps` steps of `train_on_batch` over the fixed window order; validation loss
    every `eval_every` steps. Stops at the first non-finite training loss."""
    import numpy as np

    x_train, y_train, x_val, y_val = data
    n = len(x_train) // args.batch
    evals, losses, nan_step = [], [], None

    def evaluate(step):
        loss = model.evaluate(x_val, y_val, batch_size=args.batch, verbose=0)
        evals.append((step, float(loss)))

    evaluate(0)
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        i = (step - 1) % n
        sl = slice(i * args.batch, (i + 1) * args.batch)
        logs = model.train_on_batch(x_train[sl], y_train[sl], return_dict=True)
        losses.append(float(logs["loss"]))
        if not np.isfinite(losses[-1]):
            nan_step = step
            evaluate(step)
            break
        if step % args.eval_every == 0 or step == args.steps:
            evaluate(step)
    result = dict(
        train_loss=losses, val=evals, nan_step=nan_step, seconds=time.perf_counter() - start,
        weights_finite=all(
            bool(np.all(np.isfinite(np.asarray(w)))) for w in model.trainable_weights
        ),
    )
    opt = model.optimizer
    if hasattr(opt, "dynamic_scale"):
        result["loss_scale"] = float(np.asarray(opt.dynamic_scale))
    return result


# --------------------------------------------------------------------------------------------
# Gradient underflow at initialisation


def _underflow(values, fmt):
    """`(count, nonzero)`: how many of the nonzero values `fmt` rounds to zero, of how many.
    A plain `ml_dtypes` / NumPy cast (round to nearest even), which `cast_to_format` matches
    bit for bit; NumPy keeps it fast on every backend."""
    import ml_dtypes
    import numpy as np

    dtype = {"fp16": np.float16, "e5m2": ml_dtypes.float8_e5m2}[fmt]
    values = np.asarray(values, "float32").ravel()
    nonzero = values != 0
    cast = values.astype(dtype).astype("float32")
    return float(np.sum(nonzero & (cast == 0))), float(np.sum(nonzero))


def init_gradients(kind, args, vocab_size, x, y):
    """Underflow of the initial gradients in float32: at layer outputs (`track_scales`) and of
    the weights. Returns `(layer_rows, weight_summary)`."""
    import keras
    import numpy as np

    import keras_unitscale as ku
    from keras_unitscale.analysis import track_scales
    from keras_unitscale.backend import compile_pure, vjp

    keras.utils.set_random_seed(args.seed)
    model = unit_scaled_lm(args, vocab_size) if kind == "unit" else plain_lm(args, vocab_size)
    loss = (
        ku.losses.SparseCategoricalCrossentropy()
        if kind == "unit"
        else keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    table = track_scales(model, x, y, loss=loss)
    rows = [dict(r) for r in table.select(direction="backward")]

    def weight_gradients(trainable, non_trainable, x, y):
        def loss_of(*weights):
            y_pred, _ = model.stateless_call(list(weights), non_trainable, x)
            return loss(y, y_pred)

        _, pullback = vjp(loss_of, *trainable)
        return pullback(keras.ops.ones((), "float32"))

    # One jitted function on JAX (eager JAX compiles every op separately); eager elsewhere.
    grads = compile_pure(weight_gradients)(
        [v.value for v in model.trainable_variables],
        [v.value for v in model.non_trainable_variables],
        keras.ops.convert_to_tensor(x),
        keras.ops.convert_to_tensor(y),
    )
    # Dense arrays (TensorFlow gives the embedding's gradient as IndexedSlices).
    grads = [keras.ops.convert_to_numpy(keras.ops.convert_to_tensor(g)) for g in grads]
    summary = {}
    for fmt in ("fp16", "e5m2"):
        zero = total = 0.0
        for g in grads:
            z, t = _underflow(g, fmt)
            zero, total = zero + z, total + t
        summary[fmt] = zero / max(total, 1.0)
    summary["std"] = float(
        np.sqrt(np.mean(np.concatenate([np.asarray(g).ravel() ** 2 for g in grads])))
    )
    summary["count"] = int(sum(np.asarray(g).size for g in grads))
    return rows, summary


# --------------------------------------------------------------------------------------------
# Report


def _fmt_loss(value):
    return "NaN" if value is None or not math.isfinite(value) else f"{value:.3f}"


def results_table(results):
    """Markdown: one row per precision, one column pair per model."""
    lines = [
        "| precision | unit-scaled val loss | vs its float32 | plain Keras val loss "
        "| vs its float32 |",
        "|---|---|---|---|---|",
    ]
    for precision in PRECISIONS:
        cells = [LABELS[precision]]
        present = False
        for kind in ("unit", "plain"):
            r = results.get(f"{kind}/{precision}")
            base = results.get(f"{kind}/float32")
            if r is None:
                cells += ["—", "—"]
                continue
            present = True
            final = r["val"][-1][1]
            note = ""
            if r["nan_step"] is not None:
                note = f" (NaN at step {r['nan_step']})"
            elif not r["weights_finite"]:
                note = " (non-finite weights)"
            if "loss_scale" in r:
                note += f" (final loss scale {r['loss_scale']:g})"
            cells.append(_fmt_loss(final) + note)
            if base is not None and precision != "float32" and math.isfinite(final):
                ref = base["val"][-1][1]
                cells.append(f"{100 * (final - ref) / ref:+.2f}%")
            else:
                cells.append("—")
        if present:
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def underflow_table(grads):
    lines = [
        "| model | weight gradients | rms | FP16 underflow | E5M2 underflow "
        "| layer-output gradients: worst FP16 / E5M2 underflow |",
        "|---|---|---|---|---|---|",
    ]
    for kind, label in (("unit", "unit-scaled"), ("plain", "plain Keras")):
        if kind not in grads:
            continue
        rows, s = grads[kind]
        worst16 = max(rows, key=lambda r: r["fp16_underflow"])
        worst8 = max(rows, key=lambda r: r["e5m2_underflow"])
        lines.append(
            f"| {label} | {s['count']:,} | {s['std']:.2g} | {s['fp16']:.2%} | {s['e5m2']:.2%} "
            f"| {worst16['fp16_underflow']:.2%} (`{worst16['layer']}`) / "
            f"{worst8['e5m2_underflow']:.2%} (`{worst8['layer']}`) |"
        )
    return "\n".join(lines)


def layer_rows_text(rows):
    out = [f"{'layer':32s} {'grad std':>9s} {'fp16 uf':>8s} {'e5m2 uf':>8s}"]
    for r in rows:
        out.append(
            f"{r['layer']:32s} {r['std']:9.3g} {r['fp16_underflow']:8.2%} "
            f"{r['e5m2_underflow']:8.2%}"
        )
    return "\n".join(out)


def plot(results, path, title):
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.2))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2, sharey=True)
    styles = {
        "float32": ("k", "-"), "fp16": ("tab:red", "-"), "fp16_ls": ("tab:red", ":"),
        "bf16": ("tab:blue", "--"), "fp8": ("tab:green", "-"), "fp8_all": ("tab:olive", "-."),
    }
    finite = [
        v for r in results.values() for _, v in r["val"][1:] if math.isfinite(v)
    ]
    for ax, (kind, name) in zip(axes, (("unit", "unit-scaled"), ("plain", "plain keras.layers"))):
        for precision, (color, ls) in styles.items():
            r = results.get(f"{kind}/{precision}")
            if r is None:
                continue
            steps, vals = zip(*r["val"])
            vals = np.where(np.isfinite(vals), vals, np.nan)
            label = LABELS[precision] + (f" (NaN @ {r['nan_step']})" if r["nan_step"] else "")
            ax.plot(steps, vals, color=color, linestyle=ls, label=label, linewidth=1.5)
        ax.set_title(name)
        ax.set_xlabel("training step")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    axes[0].set_ylabel("validation loss (nats / character)")
    if finite:
        lo, hi = min(finite), max(finite)
        pad = 0.05 * (hi - lo) or 0.05
        axes[0].set_ylim(lo - pad, hi + pad)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def write_doc_block(doc, backend, text):
    begin = f"<!-- low_precision.py {backend} results: begin -->"
    end = f"<!-- low_precision.py {backend} results: end -->"
    with open(doc, encoding="utf-8") as f:
        content = f.read()
    pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
    if not pattern.search(content):
        print(f"({doc} has no {begin!r} block: not written)")
        return False
    content = pattern.sub(lambda _: f"{begin}\n{text}\n{end}", content)
    with open(doc, "w", encoding="utf-8") as f:
        f.write(content)
    return True


def sweep(args, data, vocab_size, command, t0):
    """float32 runs of both models at each learning rate; prints final validation losses."""
    import keras

    rows = []
    for kind, lrs in (("unit", args.sweep_unit), ("plain", args.sweep_plain)):
        for lr in [float(v) for v in lrs.split(",")]:
            model = build(kind, "float32", args, vocab_size, lr=lr)
            r = train(model, data, args)
            rows.append((kind, lr, r["val"][-1][1]))
            print(f"{kind:6s} lr {lr:g}: val {' '.join(f'{v:.3f}' for _, v in r['val'])}",
                  flush=True)
            del model
            keras.backend.clear_session()
    print("\n| model | learning rate | float32 val loss |\n|---|---|---|")
    for kind, lr, val in rows:
        print(f"| {'unit-scaled' if kind == 'unit' else 'plain Keras'} | {lr:g} | {val:.3f} |")
    print(f"\n{(time.perf_counter() - t0) / 60:.1f} min; command: {command}")
    return rows


def main(argv=None):
    args = parse_args(argv)
    if args.backend:
        os.environ["KERAS_BACKEND"] = args.backend
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.path.insert(0, ROOT)
    import keras

    backend = keras.backend.backend()
    command = "nice .venv/bin/python benchmarks/low_precision.py " + " ".join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)
    )
    if args.backend is None:
        command = f"KERAS_BACKEND={backend} " + command
    t0 = time.perf_counter()
    x_train, y_train, x_val, y_val, vocab_size = load_data(args)
    print(f"data loaded in {time.perf_counter() - t0:.0f} s")
    data = (x_train, y_train, x_val, y_val)
    print(
        f"backend {backend}; vocabulary {vocab_size}; {len(x_train)} training windows of "
        f"{args.seq} (one epoch = {len(x_train) // args.batch} steps of {args.batch}), "
        f"{args.steps} steps per run; {len(x_val)} validation windows",
        flush=True,
    )

    if args.sweep:
        return sweep(args, data, vocab_size, command, t0)

    grads = {}
    for kind in ("unit", "plain"):
        grads[kind] = init_gradients(
            kind, args, vocab_size, x_train[: args.batch], y_train[: args.batch]
        )
        print(f"\n{kind}: initial gradients at layer outputs (float32, one training batch)")
        print(layer_rows_text(grads[kind][0]), flush=True)
    print("\n" + underflow_table(grads), flush=True)
    print(f"initial gradients measured at {time.perf_counter() - t0:.0f} s")

    results = {}
    for run in args.runs:
        kind, _, precision = run.partition("/")
        t_run = time.perf_counter()
        model = build(kind, precision, args, vocab_size)
        r = train(model, data, args)
        results[run] = r
        extra = f", final loss scale {r['loss_scale']:g}" if "loss_scale" in r else ""
        print(
            f"{run:16s} val {' '.join(f'{v:.4f}' for _, v in r['val'])}  "
            f"({r['seconds']:.0f} s training, {time.perf_counter() - t_run:.0f} s in all{extra})",
            flush=True,
        )
        del model
        keras.backend.clear_session()

    elapsed = time.perf_counter() - t0
    table = results_table(results)
    block = (
        f"{table}\n\n{underflow_table(grads)}\n\n"
        f"Made by `{command}` ({backend}, {args.steps} steps of {args.batch} x {args.seq} "
        f"characters, {elapsed / 60:.1f} min wall time in all on a shared 2-core CPU)."
    )
    print("\n" + block)
    os.makedirs(args.out_dir, exist_ok=True)
    png = os.path.join(args.out_dir, f"low_precision_{backend}.png")
    plot(
        results, png,
        f"char LM on People's Daily, width {args.width}, {args.blocks} blocks, "
        f"seq {args.seq}, batch {args.batch}, {args.steps} steps ({backend})",
    )
    print(f"\nwrote {png}")
    if args.doc != "none" and write_doc_block(args.doc, backend, block):
        print(f"wrote the results block of {args.doc}")
    print(f"command: {command}")
    return results


if __name__ == "__main__":
    main()
