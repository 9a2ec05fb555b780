"""k-bit inference scaling: validation loss of quantised CausalLMs against total model bits.

    python benchmarks/kbit_scaling.py --time             # seconds per step of each size
    python benchmarks/kbit_scaling.py --lr-check         # short runs at a grid of rates
    python benchmarks/kbit_scaling.py                    # the study (resumes where it stopped)
    python benchmarks/kbit_analysis.py                   # tables, plots, docs/kbit.md

Two families of decoder-only transformers, 5 sizes each (about 9k to 0.44M parameters, 46x,
the tied token table included), trained on People's Daily (`load_peoples_daily(seed=0)`,
characters seen at least `--min-frequency` times in the training split, the rest one unknown
id; random windows of `--length` + 1 characters, the same stream for every model):
- `unit_scaled`: `keras_unitscale`'s `TransformerDecoderBackbone` + `CausalLM` (tied readout)
  with u-muP's `keras_unitscale.optimizers.AdamW` (per-weight rates; one base rate for all
  sizes, which is what u-muP promises to transfer);
- `plain`: KerasHub's `GPT2Backbone` (tied readout, its N(0, 0.02) initialisers) with Keras'
  `AdamW`, one rate for every weight.
Both: head size 32 (one head below width 32), MLP 4 x width, no dropout, no weight decay, a
5% linear warm-up then cosine decay to 10% of the peak; the rates are `--lr-check`'s (see
docs/kbit.md). Each trained model is then quantised with
`keras_unitscale.quantization.quantize_model_weights` at every k = 3..8, data type (`int`,
`float`, `quantile`) and block size (32, 64, 128, none = per channel), and its validation
loss measured on fixed held-out windows; total model bits = quantised parameters x bits per
parameter (block scales in float16 included) + the other parameters (biases, norms) x 16.

Resumable: each finished model appends one JSON line (its float loss, learning curve and 72
quantised rows) to benchmarks/results/kbit_scaling_models.jsonl; a rerun with the same
settings skips the models already there. JAX is the intended backend (one compile per model).
"""

import argparse
import json
import math
import os
import platform
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
RESULTS = os.path.join(ROOT, "benchmarks", "results", "kbit_scaling_models.jsonl")
# (layers, width). With the ~1,000-character vocabulary: about 9k to 0.44M parameters (46x).
SIZES = ((1, 8), (1, 16), (2, 32), (3, 64), (3, 96))
# Training steps per size (batch `--batch`), planned from the measured seconds per step
# (`--time`: 0.08 to 1.3 s on one shared core) to fit about 45 minutes for both families.
STEPS = (800, 800, 800, 600, 600)


def peak_rate(family, width):
    """u-muP: one base rate, 2**1, the best of benchmarks/lr_transfer.py's H200 sweep at
    widths 64 to 256 (same corpus, characters). Plain (standard parametrization): that
    sweep's best Keras rate, 2**-7 at width 64, falling as 1 / width (2**-8 at 128 ... 2**-10
    at 512) above 64; below it capped at 2**-6, the best of 2**-6, 2**-4, 2**-2 at width 8
    by `--lr-check` (200 steps; docs/kbit.md)."""
    return 2.0 if family == "unit_scaled" else 2.0**-7 * min(2.0, 64 / width)

BLOCKS = (32, 64, 128, None)


def corpus(min_frequency, length, num_train, num_val):
    """(train windows, val windows, vocabulary size, unigram cross-entropy on val targets):
    windows of `length + 1` ids at random starts (seeds 0 and 1) of the concatenated split."""
    from keras_unitscale.datasets import load_peoples_daily
    from keras_unitscale.tokenizers import CharacterTokenizer

    train, val, _ = load_peoples_daily(seed=0)
    tokenizer = CharacterTokenizer.from_corpus(list(train), min_frequency=min_frequency)
    vocabulary = tokenizer.get_vocabulary()
    index = {token: i for i, token in enumerate(vocabulary)}
    unk = index["[UNK]"]

    def ids(texts):
        out = np.array([index.get(c, unk) for c in "".join(texts)], dtype="int32")
        assert np.array_equal(out[:len(texts[0])], np.asarray(tokenizer(texts[0])).reshape(-1))
        return out

    train_ids, val_ids = ids(list(train)), ids(list(val))

    def windows(stream, n, seed):
        starts = np.random.default_rng(seed).integers(0, len(stream) - length - 1, n)
        return np.stack([stream[s:s + length + 1] for s in starts])

    val_windows = windows(val_ids, num_val, 1)
    counts = np.bincount(train_ids, minlength=len(vocabulary)) + 1.0  # add-one
    log_p = np.log(counts / counts.sum())
    unigram = float(-log_p[val_windows[:, 1:]].mean())
    return windows(train_ids, num_train, 0), val_windows, len(vocabulary), unigram


def schedule(peak, steps):
    import keras

    warmup = max(1, steps // 20)
    return keras.optimizers.schedules.CosineDecay(
        0.0, steps - warmup, alpha=0.1, warmup_target=peak, warmup_steps=warmup)


def build(family, vocab, layers, width, length, rate, steps):
    import keras

    heads = max(1, width // 32)
    if family == "unit_scaled":
        import keras_unitscale as ku

        backbone = ku.models.TransformerDecoderBackbone(
            vocab, num_layers=layers, num_heads=heads, hidden_dim=width,
            intermediate_dim=4 * width, max_sequence_length=length,
        )
        model = ku.models.CausalLM(backbone)
        model.compile(optimizer=ku.optimizers.AdamW(
            schedule(rate, steps), weight_decay=0.0, peak_learning_rate=rate))
        return model
    import keras_hub

    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=vocab, num_layers=layers, num_heads=heads, hidden_dim=width,
        intermediate_dim=4 * width, dropout=0.0, max_sequence_length=length,
    )
    inputs = backbone.input
    logits = backbone.token_embedding(backbone(inputs), reverse=True)
    model = keras.Model(inputs, logits)
    model.compile(
        optimizer=keras.optimizers.AdamW(schedule(rate, steps), weight_decay=0.0),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def as_inputs(batch):
    x = {"token_ids": batch[:, :-1], "padding_mask": np.ones_like(batch[:, :-1])}
    return x, batch[:, 1:]


def val_loss(model, val):
    x, y = as_inputs(val)
    return float(model.evaluate(x, y, batch_size=len(val), verbose=0, return_dict=True)["loss"])


def train(model, data, batch, val, checkpoints=4):
    """Trains on `data` in order, one pass; returns [(step, val loss)] at `checkpoints` even
    points (the optimizer's schedule runs across the calls to fit)."""
    curve = []
    steps = len(data) // batch
    edges = np.linspace(0, steps, checkpoints + 1).astype(int)
    for a, b in zip(edges[:-1], edges[1:]):
        x, y = as_inputs(data[a * batch:b * batch])
        model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False)
        curve.append((int(b), round(val_loss(model, val), 4)))
    return curve


def quantised_rows(model, val, blocks):
    from keras_unitscale.quantization import kbit

    weights = model.get_weights()
    rows = []
    for bits in kbit.BITS:
        for dtype in kbit.DTYPES:
            for block in blocks:
                summary = kbit.quantize_model_weights(model, bits, dtype, block)
                loss = val_loss(model, val)
                model.set_weights(weights)
                rows.append(dict(bits=bits, dtype=dtype, block_size=block,
                                 val_loss=round(loss, 4),
                                 total_bits=int(round(summary["total_bits"])),
                                 bits_per_parameter=round(summary["bits_per_parameter"], 4)))
    return rows


def load_done(path, settings):
    done = {}
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                if line.strip():
                    entry = json.loads(line)
                    if entry["settings"] == settings:
                        done[(entry["family"], entry["layers"], entry["width"])] = entry
    return done


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", nargs="+", default=["unit_scaled", "plain"])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(range(len(SIZES))),
                        help="indices into SIZES")
    parser.add_argument("--steps-scale", type=float, default=1.0,
                        help="multiply every size's steps (a smoke run: 0.02)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--min-frequency", type=int, default=200)
    parser.add_argument("--val-windows", type=int, default=64)
    parser.add_argument("--time", action="store_true",
                        help="only measure seconds per training step of each size")
    parser.add_argument("--lr-check", nargs="*", type=float, default=None,
                        help="multiples of peak_rate to try, each a short run")
    parser.add_argument("--output", default=RESULTS)
    args = parser.parse_args(argv)

    import keras

    steps = [max(8, int(s * args.steps_scale)) for s in STEPS]
    most = max(steps[i] for i in args.sizes) * args.batch
    data, val, vocab, unigram = corpus(args.min_frequency, args.length, most, args.val_windows)
    print(f"vocabulary {vocab}; unigram cross-entropy on val {unigram:.4f} nats/char",
          flush=True)
    if args.time:
        for family in args.families:
            for i in args.sizes:
                layers, width = SIZES[i]
                model = build(family, vocab, layers, width, args.length, 1e-3, 100)
                x, y = as_inputs(data[:20 * args.batch])
                model.fit(x, y, batch_size=args.batch, verbose=0)  # compiles
                start = time.perf_counter()
                model.fit(x, y, batch_size=args.batch, verbose=0)
                per_step = (time.perf_counter() - start) / 20
                print(f"{family} {layers}x{width}: {model.count_params():,} parameters, "
                      f"{per_step * 1000:.0f} ms/step", flush=True)
        return
    if args.lr_check is not None:
        for family in args.families:
            for i in args.sizes:
                layers, width = SIZES[i]
                for multiple in args.lr_check:
                    rate = multiple * peak_rate(family, width)
                    keras.utils.set_random_seed(0)
                    model = build(family, vocab, layers, width, args.length, rate, steps[i])
                    curve = train(model, data[:steps[i] * args.batch], args.batch, val, 1)
                    print(f"lr-check {family} {layers}x{width} steps {steps[i]} rate {rate:g}:"
                          f" val {curve[-1][1]:.4f}", flush=True)
        return
    settings = dict(length=args.length, batch=args.batch, min_frequency=args.min_frequency,
                    val_windows=args.val_windows, steps_scale=args.steps_scale,
                    backend=keras.backend.backend())
    done = load_done(args.output, settings)
    for i in args.sizes:  # both families at each size before the next size
        for family in args.families:
            layers, width = SIZES[i]
            if (family, layers, width) in done:
                print(f"done already: {family} {layers}x{width}", flush=True)
                continue
            keras.utils.set_random_seed(0)
            rate = peak_rate(family, width)
            model = build(family, vocab, layers, width, args.length, rate, steps[i])
            start = time.perf_counter()
            curve = train(model, data[:steps[i] * args.batch], args.batch, val)
            seconds = time.perf_counter() - start
            start = time.perf_counter()
            rows = quantised_rows(model, val, BLOCKS)
            entry = dict(
                family=family, layers=layers, width=width, settings=settings,
                parameters=int(sum(math.prod(v.shape) for v in model.weights)),
                vocabulary=vocab, steps=steps[i], tokens=steps[i] * args.batch * args.length,
                peak_rate=rate, float_val_loss=curve[-1][1], unigram_val_loss=round(unigram, 4),
                curve=curve, train_seconds=round(seconds, 1),
                quantise_seconds=round(time.perf_counter() - start, 1),
                machine=f"{platform.machine()} CPU, {os.cpu_count()} cores (shared)",
                keras=keras.__version__, rows=rows,
            )
            os.makedirs(os.path.dirname(args.output), exist_ok=True)
            with open(args.output, "a") as f:
                f.write(json.dumps(entry) + "\n")
            print({k: v for k, v in entry.items() if k not in ("rows", "settings")}, flush=True)


if __name__ == "__main__":
    main()
