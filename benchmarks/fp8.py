"""Native FP8 training (issue 18): step time and loss of our bfloat16 and FP8 causal LMs, and
of a plain Keras model of the same dimensions with `quantize("float8")` (delayed scaling).

Two parts, one run, JAX (native FP8 is JAX's FP8 dot; see docs/low_precision.md):

1. Speed, at GPT-2-small (12 layers, width 768, 12 heads) and GPT-2-medium (24 layers, width
   1024, 16 heads), sequence 1024, GPT-2's vocabulary (50,257), random token ids:
   `keras_unitscale.models.CausalLM` (`TransformerDecoderBackbone`, untied readout) under
   `mixed_bfloat16`, then the same model after `enable_fp8(model, mode=--mode)` (readout kept
   in bfloat16; `--keep-critical` keeps the attention output and MLP down projections too),
   then the plain model (`keras.layers`, the same blocks) under `mixed_bfloat16` and after
   Keras' `model.quantize("float8")`. A step is `train_on_batch` (AdamW; the compiled
   `fit` step); timed rounds alternate between the models and each figure is the median
   step time; the ratio `bf16 / fp8` above 1 means FP8 is faster.
2. Quality, on People's Daily (January 1998 news, character level, `load_peoples_daily`; see
   /work/shared/DATA.md): our model in bfloat16 and in FP8, and the plain Keras model with
   `quantize("float8")`, trained `--quality-steps` steps from the same initial weights (one
   seed per architecture) on the same batches in the same order; validation loss every
   `--eval-every` steps. The default size (8 layers, width 768, 12 heads, sequence 256) has
   about 60M matmul parameters (63M in all), above the 50M the issue asks for.

Writes `benchmarks/results/fp8_<mode>.json` (`fp8_<mode>_speed.json` / `_quality.json` when
one part is skipped) and the loss-curve plot `docs/fp8_loss_<mode>.png` (`--out-dir`), and
prints the tables.

    # On an H100/H200, the two parts (as benchmarks/gpu_suite.sh fp8 runs them):
    python3 benchmarks/fp8.py --mode native --no-quality
    python3 benchmarks/fp8.py --mode native --no-speed --quality-steps 400
    # Anywhere, tiny and simulated (smoke test, seconds):
    .venv/bin/python benchmarks/fp8.py --tiny --mode simulate --out-dir /tmp/fp8

`--mode native` needs an FP8 GPU (compute capability 8.9+: Ada, Hopper) and says so otherwise.
Before timing, with `--mode native`, the script lowers one FP8 training step and reports how
many of its dots XLA turned into cuBLASLt FP8 GEMMs (`fp8_hlo_report`).
"""

import argparse
import json
import math
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZES = {
    "gpt2-small": dict(layers=12, hidden=768, heads=12),
    "gpt2-medium": dict(layers=24, hidden=1024, heads=16),
    "tiny": dict(layers=2, hidden=32, heads=2),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["native", "simulate"], default="native")
    parser.add_argument("--sizes", default="gpt2-small,gpt2-medium",
                        help=f"speed sizes, from {sorted(SIZES)}")
    parser.add_argument("--seq", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--vocab", type=int, default=50257)
    parser.add_argument("--steps", type=int, default=3, help="steps per timed round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keep-critical", action="store_true")
    parser.add_argument("--quality-steps", type=int, default=600)
    parser.add_argument("--quality-layers", type=int, default=8)
    parser.add_argument("--quality-hidden", type=int, default=768)
    parser.add_argument("--quality-heads", type=int, default=12)
    parser.add_argument("--quality-seq", type=int, default=256)
    parser.add_argument("--quality-batch", type=int, default=32)
    parser.add_argument("--quality-vocab", type=int, default=4000)
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--val-windows", type=int, default=256)
    parser.add_argument("--lr-unit", type=float, default=None,
                        help="u-muP base rate (default: UnitScaledModel.compile's)")
    parser.add_argument("--lr-plain", type=float, default=3e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-speed", dest="speed", action="store_false")
    parser.add_argument("--no-quality", dest="quality", action="store_false")
    parser.add_argument("--tiny", action="store_true", help="tiny dimensions (smoke test)")
    parser.add_argument("--out-dir", default=None,
                        help="where the JSON and PNG go (default benchmarks/results and docs)")
    args = parser.parse_args(argv)
    if args.tiny:
        args.sizes, args.seq, args.batch, args.vocab = "tiny", 16, 2, 64
        args.steps, args.rounds = 1, 1
        args.quality_steps, args.quality_layers, args.quality_hidden = 4, 1, 32
        args.quality_heads, args.quality_seq, args.quality_batch = 2, 16, 4
        args.quality_vocab, args.eval_every, args.val_windows = 200, 2, 8
    args.sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    for size in args.sizes:
        if size not in SIZES:
            parser.error(f"unknown size {size!r}: expected one of {sorted(SIZES)}")
    return args


# Models -------------------------------------------------------------------------------------


def ours(vocab, layers, hidden, heads, seq, fp8_mode, keep_critical, lr, seed):
    """Our CausalLM under mixed_bfloat16; FP8 per `fp8_mode` (None, "native", "simulate")."""
    import keras

    import keras_unitscale as ku
    from keras_unitscale.precision import enable_fp8

    keras.utils.set_random_seed(seed)
    backbone = ku.models.TransformerDecoderBackbone(
        vocab, num_layers=layers, num_heads=heads, hidden_dim=hidden,
        intermediate_dim=4 * hidden, max_sequence_length=seq, dtype="mixed_bfloat16",
    )
    model = ku.models.CausalLM(backbone, tie_weights=False)
    if fp8_mode:
        enable_fp8(model, mode=fp8_mode, keep_critical=keep_critical)
    # UnitScaledModel.compile's defaults: u-muP's AdamW (per-weight rates from the base rate
    # `lr`, or the library's default base rate for None) and the unit-scaled cross-entropy.
    model.compile(learning_rate=lr, jit_compile=True)
    return model


def plain(vocab, layers, hidden, heads, seq, float8, lr, seed):
    """The same blocks from `keras.layers` (benchmarks/low_precision.py's plain model) under
    mixed_bfloat16; with `float8`, Keras' `quantize("float8")` (delayed scaling)."""
    import keras

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from low_precision import plain_lm

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        keras.utils.set_random_seed(seed)
        model = plain_lm(argparse.Namespace(seq=seq, width=hidden, heads=heads, blocks=layers),
                         vocab)
        if float8:
            model.quantize("float8")
        model.compile(optimizer=keras.optimizers.AdamW(lr, weight_decay=0.0),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      jit_compile=True)
    finally:
        keras.config.set_dtype_policy(previous)
    return model


def _inputs(model, ids):
    return {"token_ids": ids, "padding_mask": ids * 0 + 1} if hasattr(model, "backbone") else ids


def matmul_params(layers, hidden, vocab):
    """Parameters that enter a matmul per token: 12 d^2 per block and the readout."""
    return layers * 12 * hidden * hidden + hidden * vocab


# Part 1: speed ------------------------------------------------------------------------------


def hlo_check(model, ids):
    """`fp8_hlo_report` of one jitted training step (loss and gradients) of `model`."""
    import jax
    import keras

    from keras_unitscale.ops.fp8_native import fp8_hlo_report

    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]
    x, y = _inputs(model, ids[:, :-1]), ids[:, 1:]

    def loss(weights):
        logits, _ = model.stateless_call(weights, non_trainable, x)
        return keras.ops.mean(
            keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)
        )

    return fp8_hlo_report(jax.grad(loss), trainable)


def speed(args, size):
    import numpy as np

    dims = SIZES[size]
    rng = np.random.default_rng(args.seed)
    ids = rng.integers(0, args.vocab, (args.batch, args.seq + 1)).astype("int32")
    builders = {
        "ours_bf16": lambda: ours(args.vocab, seq=args.seq, fp8_mode=None, keep_critical=False,
                                  lr=None, seed=args.seed, **dims),
        f"ours_fp8_{args.mode}": lambda: ours(args.vocab, seq=args.seq, fp8_mode=args.mode,
                                              keep_critical=args.keep_critical, lr=None,
                                              seed=args.seed, **dims),
        "plain_bf16": lambda: plain(args.vocab, seq=args.seq, float8=False, lr=1e-4,
                                    seed=args.seed, **dims),
        "plain_float8": lambda: plain(args.vocab, seq=args.seq, float8=True, lr=1e-4,
                                      seed=args.seed, **dims),
    }
    models, times, losses, report = {}, {}, {}, None
    for name, build in builders.items():
        model = build()
        x, y = _inputs(model, ids[:, :-1]), ids[:, 1:]
        logs = model.train_on_batch(x, y, return_dict=True)  # compiles
        models[name], times[name], losses[name] = (model, x, y), [], [float(logs["loss"])]
        if name.startswith("ours_fp8") and args.mode == "native":
            report = hlo_check(model, ids)
    for _ in range(args.rounds):
        for name, (model, x, y) in models.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                logs = model.train_on_batch(x, y, return_dict=True)
            float(logs["loss"])  # waits for the device
            times[name].append((time.perf_counter() - start) / args.steps)
            losses[name].append(float(logs["loss"]))
    step = {name: statistics.median(t) for name, t in times.items()}
    return dict(
        size=size, dims=dims, seq=args.seq, batch=args.batch, vocab=args.vocab,
        matmul_params=matmul_params(vocab=args.vocab, **{k: dims[k] for k in ("layers", "hidden")}),
        step_seconds=step, losses=losses, hlo=report,
        speedup_ours=step["ours_bf16"] / step[f"ours_fp8_{args.mode}"],
        speedup_plain=step["plain_bf16"] / step["plain_float8"],
    )


# Part 2: quality ----------------------------------------------------------------------------


def load_data(args):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import low_precision

    ns = argparse.Namespace(seed=args.seed, quick=args.tiny, vocab=args.quality_vocab,
                            seq=args.quality_seq, val_windows=args.val_windows)
    return low_precision.load_data(ns)


def quality(args):
    import numpy as np

    x_train, y_train, x_val, y_val, vocab = load_data(args)
    dims = dict(layers=args.quality_layers, hidden=args.quality_hidden,
                heads=args.quality_heads, seq=args.quality_seq)
    runs = {
        "ours_bf16": lambda: ours(vocab, fp8_mode=None, keep_critical=False, lr=args.lr_unit,
                                  seed=args.seed, **dims),
        f"ours_fp8_{args.mode}": lambda: ours(vocab, fp8_mode=args.mode,
                                              keep_critical=args.keep_critical,
                                              lr=args.lr_unit, seed=args.seed, **dims),
        "plain_float8": lambda: plain(vocab, float8=True, lr=args.lr_plain, seed=args.seed,
                                      **dims),
    }
    n = len(x_train) // args.quality_batch
    results = {}
    for name, build in runs.items():
        model = build()
        evals, train_losses = [], []

        def evaluate(step):
            loss = model.evaluate(_inputs(model, x_val), y_val, batch_size=args.quality_batch,
                                  verbose=0)
            evals.append((step, float(loss[0] if isinstance(loss, list) else loss)))

        evaluate(0)
        start = time.perf_counter()
        for step in range(1, args.quality_steps + 1):
            sl = slice(((step - 1) % n) * args.quality_batch, ((step - 1) % n + 1)
                       * args.quality_batch)
            logs = model.train_on_batch(_inputs(model, x_train[sl]), y_train[sl],
                                        return_dict=True)
            train_losses.append(float(logs["loss"]))
            if not np.isfinite(train_losses[-1]):
                evaluate(step)
                break
            if step % args.eval_every == 0 or step == args.quality_steps:
                evaluate(step)
        results[name] = dict(val=evals, train_loss=train_losses,
                             seconds=time.perf_counter() - start)
        print(f"  {name}: final validation loss {evals[-1][1]:.4f}", flush=True)
    bf16 = results["ours_bf16"]["val"][-1][1]
    fp8 = results[f"ours_fp8_{args.mode}"]["val"][-1][1]
    return dict(
        dims=dims, vocab=vocab, steps=args.quality_steps, batch=args.quality_batch,
        matmul_params=matmul_params(dims["layers"], dims["hidden"], vocab), runs=results,
        fp8_vs_bf16=(fp8 - bf16) / bf16,
    )


def plot(quality_result, path, title):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.2))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for name, run in quality_result["runs"].items():
        steps, vals = zip(*run["val"])
        vals = [v if math.isfinite(v) else float("nan") for v in vals]
        ax.plot(steps, vals, label=name, linewidth=1.5)
    ax.set_xlabel("training step")
    ax.set_ylabel("validation loss (nats / character)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def device():
    import jax

    d = jax.devices()[0]
    return f"{d.platform}: {getattr(d, 'device_kind', d.platform)}"


def main(argv=None):
    os.environ.setdefault("KERAS_BACKEND", "jax")
    args = parse_args(argv)
    import keras

    if keras.backend.backend() != "jax":
        sys.exit("benchmarks/fp8.py runs on JAX (KERAS_BACKEND=jax).")
    from keras_unitscale.ops.fp8_native import fp8_hardware

    if args.mode == "native" and not fp8_hardware()[0]:
        sys.exit(f"--mode native needs an FP8 GPU; this is {fp8_hardware()[1]}. Use --mode "
                 "simulate (and --tiny on a CPU).")
    out_json = args.out_dir or os.path.join(ROOT, "benchmarks", "results")
    out_png = args.out_dir or os.path.join(ROOT, "docs")
    os.makedirs(out_json, exist_ok=True)
    os.makedirs(out_png, exist_ok=True)
    result = dict(device=device(), mode=args.mode, keep_critical=args.keep_critical,
                  command=" ".join(["benchmarks/fp8.py"] + (argv or sys.argv[1:])),
                  keras=keras.__version__, speed=[], quality=None)
    if args.speed:
        print(f"{'size':<12} {'ours bf16':>10} {'ours fp8':>10} {'x':>6} {'keras bf16':>11} "
              f"{'keras f8':>10} {'x':>6}  (ms per step; {result['device']})")
        for size in args.sizes:
            r = speed(args, size)
            s = r["step_seconds"]
            print(f"{size:<12} {1e3 * s['ours_bf16']:>10.1f} "
                  f"{1e3 * s[f'ours_fp8_{args.mode}']:>10.1f} {r['speedup_ours']:>6.2f} "
                  f"{1e3 * s['plain_bf16']:>11.1f} {1e3 * s['plain_float8']:>10.1f} "
                  f"{r['speedup_plain']:>6.2f}", flush=True)
            if r["hlo"] is not None:
                print(f"  FP8 step HLO: {r['hlo']}", flush=True)
            result["speed"].append(r)
    if args.quality:
        q = quality(args)
        result["quality"] = q
        print(f"quality: {q['matmul_params'] / 1e6:.1f}M matmul parameters, {q['steps']} steps; "
              f"FP8 vs bf16 final validation loss: {100 * q['fp8_vs_bf16']:+.2f}%")
        png = os.path.join(out_png, f"fp8_loss_{args.mode}.png")
        plot(q, png, f"People's Daily, {q['matmul_params'] / 1e6:.0f}M, {result['device']}")
        result["plot"] = os.path.relpath(png, ROOT)
    part = "" if args.speed == args.quality else ("_speed" if args.speed else "_quality")
    path = os.path.join(out_json, f"fp8_{args.mode}{part}.json")
    with open(path + ".tmp", "w") as f:
        json.dump(result, f, indent=1)
    os.replace(path + ".tmp", path)
    print(f"wrote {path}")
    return result


if __name__ == "__main__":
    main()
