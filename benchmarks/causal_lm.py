"""Training and generation throughput of `keras_unitscale.models.CausalLM` relative to
`keras_hub.models.GPT2CausalLM` with the same dimensions.

Both models are built from random weights with the same vocabulary, depth, width, heads, MLP
size and sequence length (no dropout), and fed the same random token ids:
- training: `train_on_batch` (the compiled train step of `fit`: XLA via `jit_compile=True` on
  TensorFlow, `jax.jit` on JAX), AdamW, sparse cross-entropy from logits; tokens/s =
  batch x sequence length / step time;
- generation: `generate()` on packed prompts of `--prompt` tokens up to `--seq` tokens,
  greedy, no stop token (every row generates `seq - prompt` tokens), each model's own
  compiled decoding loop with its key/value cache; tokens/s = new tokens / call time.
Timed rounds alternate between the two models; each ratio (ours / KerasHub throughput,
above 1 = ours faster) is the median of the per-round ratios, robust to other load on the
machine. Each backend runs in its own subprocess.

    .venv/bin/python benchmarks/causal_lm.py                  # both backends
    .venv/bin/python benchmarks/causal_lm.py --backend jax --hidden 256 --layers 6
"""

import argparse
import json
import time

from _child import measure_in_children, options_of


def _models(args):
    import keras
    import keras_hub

    from keras_unitscale.models import CausalLM
    from keras_unitscale.models.backbones import TransformerDecoderBackbone

    dims = dict(
        vocabulary_size=args.vocab, num_layers=args.layers, num_heads=args.heads,
        hidden_dim=args.hidden, intermediate_dim=4 * args.hidden, max_sequence_length=args.seq,
    )
    ours = CausalLM(TransformerDecoderBackbone(**dims))
    ours.compile(jit_compile=True)
    theirs = keras_hub.models.GPT2CausalLM(
        keras_hub.models.GPT2Backbone(dropout=0.0, **dims), preprocessor=None
    )
    theirs.compile(
        optimizer=keras.optimizers.AdamW(1e-3, weight_decay=0.0),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        sampler="greedy",
        jit_compile=True,
    )
    return {"ours": ours, "keras_hub": theirs}


def _rounds(args, functions, tokens):
    import numpy as np

    for f in functions.values():  # compile and warm up
        for _ in range(2):
            f()
    times = {name: [] for name in functions}
    for _ in range(args.rounds):
        for name, f in functions.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                f()
            times[name].append((time.perf_counter() - start) / args.steps)
    ratios = sorted(t / o for o, t in zip(times["ours"], times["keras_hub"]))
    return {
        "tokens_per_s_ours": tokens / float(np.median(times["ours"])),
        "tokens_per_s_keras_hub": tokens / float(np.median(times["keras_hub"])),
        "ratio": ratios[len(ratios) // 2],
    }


def _measure(args):
    import keras
    import numpy as np

    models = _models(args)
    rng = np.random.default_rng(0)
    ids = rng.integers(5, args.vocab, (args.batch, args.seq + 1)).astype("int32")
    x = {"token_ids": ids[:, :-1], "padding_mask": np.ones((args.batch, args.seq), "int32")}
    y = ids[:, 1:]
    train = _rounds(
        args,
        {name: (lambda m=m: m.train_on_batch(x, y)) for name, m in models.items()},
        args.batch * args.seq,
    )
    prompts = {
        "token_ids": np.where(np.arange(args.seq) < args.prompt, ids[:, :-1], 0).astype("int32"),
        "padding_mask": np.broadcast_to(np.arange(args.seq) < args.prompt, x["token_ids"].shape),
    }
    generate = _rounds(
        args,
        {name: (lambda m=m: m.generate(prompts, stop_token_ids=None))
         for name, m in models.items()},
        args.batch * (args.seq - args.prompt),
    )
    return {
        "backend": keras.backend.backend(),
        "params_ours": models["ours"].count_params(),
        "params_keras_hub": models["keras_hub"].count_params(),
        "train": train,
        "generate": generate,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["tensorflow", "jax"], action="append")
    parser.add_argument("--vocab", type=int, default=4000)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--prompt", type=int, default=8, help="prompt tokens when generating")
    parser.add_argument("--steps", type=int, default=3, help="calls per timed round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_measure(args)))
        return
    keys = ["vocab", "layers", "heads", "hidden", "seq", "batch", "prompt", "steps", "rounds"]
    for r in measure_in_children(__file__, args.backend or ["tensorflow", "jax"],
                                 options_of(args, keys)):
        shape = (f"vocab {args.vocab}, {args.layers} layers, width {args.hidden}, "
                 f"{args.heads} heads, batch {args.batch}, seq {args.seq}")
        for kind in ("train", "generate"):
            m = r[kind]
            print(
                f"{kind:>8} {r['backend']:>10}: ours {m['tokens_per_s_ours']:,.0f} tokens/s, "
                f"keras_hub {m['tokens_per_s_keras_hub']:,.0f} tokens/s, ratio "
                f"{m['ratio']:.3f} ({shape})"
            )
        print(json.dumps(r))


if __name__ == "__main__":
    main()
