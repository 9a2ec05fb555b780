"""Training and generation throughput of `keras_unitscale.models.CausalLM` relative to
`keras_hub.models.GPT2CausalLM` with the same dimensions.

Both models are built from random weights with the same vocabulary, depth, width, heads, MLP
size and sequence length (no dropout), and fed the same random token ids:
- training: `train_on_batch` (the compiled train step of `fit`: XLA via `jit_compile=True` on
  TensorFlow, `jax.jit` on JAX), AdamW, sparse cross-entropy from logits; tokens/s =
  batch x sequence length / step time;
- generation: `generate()` on packed prompts of `--prompt` tokens up to `--seq` tokens,
  greedy, no stop token (every row generates `seq - prompt` tokens), each model's own
  compiled decoding loop with its key/value cache; tokens/s = new tokens / call time. The
  call includes the pass over the prompts that fills the cache: KerasHub's covers all `seq`
  positions, ours only the first quarter when the prompts fit in it (16 of 64 positions,
  `keras_unitscale.models.generation.prefill`); `--prompt` above `seq / 4` (say 56) takes
  that saving away and compares the decoding loops alone.
Timed rounds alternate between the two models; each ratio (ours / KerasHub throughput,
above 1 = ours faster) is the median of the per-round ratios, robust to other load on the
machine. Each backend runs in its own subprocess.

Model FLOPs: each throughput is also given as achieved TFLOP/s of model FLOPs (the matmuls
the model needs, not what the hardware executed): per trained token `6 N + 6 L T d` and per
generated token `2 N + 4 L S d`, with `N` the parameters that enter a matmul per token (the
transformer layers and the readout: for a tied readout the embedding table counts once, for
the matmul, not for the lookup), `L` layers, `d` the width, `T` the training sequence and
`S` the mean number of cached keys attended to (the causal half of `QK^T` and `PV` is
counted, as PaLM's MFU does not; both models get the same count). Model FLOPs utilisation
(MFU) is that divided by the device's peak: on a GPU the dense tensor-core peak for the
compute dtype is looked up by name (`--peak-tflops` to give it), on a CPU only with
`--peak-tflops`.

    .venv/bin/python benchmarks/causal_lm.py                  # both backends
    .venv/bin/python benchmarks/causal_lm.py --backend jax --hidden 256 --layers 6
    .venv/bin/python benchmarks/causal_lm.py --dtype-policy mixed_bfloat16   # on a GPU
    .venv/bin/python benchmarks/causal_lm.py --backend jax --memory --no-generate

`--memory` adds the peak device memory of each model's training step: each model is trained
alone for 3 steps in a process of its own, whose peak (`memory_stats()["peak_bytes_in_use"]`
on JAX, `get_memory_info("GPU:0")["peak"]` on TensorFlow) is then that step's. CPUs have no
such counter.

`--compiled-memory` (JAX, any device, CPUs included) replaces the timings by what XLA's
compiler plans for each model's compiled training step (`jax.jit(model.train_step,
donate_argnums=0)`, as `fit` runs it): its temporary buffers (activations kept for the
backward pass, gradients, workspace; `memory_analysis().temp_size_in_bytes`), beside the
weights and optimizer state it takes. Nothing is run, so GPT-2-small's vocabulary costs only
compile time; the temporaries are also given in units of one float32 `[tokens, vocabulary]`
logits tensor, the buffer a lean readout and loss hold as few of as they can:

    .venv/bin/python benchmarks/causal_lm.py --backend jax --vocab 50257 --compiled-memory
"""

import argparse
import json
import time

from _child import measure_in_children, options_of

# Dense (no sparsity) peak TFLOP/s by GPU name and compute dtype; float32 matmuls run as
# TF32 on these GPUs under both TensorFlow's and JAX's defaults.
PEAK_TFLOPS = {
    "H200": {"bfloat16": 989.0, "float16": 989.0, "float32": 494.0},
    "H100": {"bfloat16": 989.0, "float16": 989.0, "float32": 494.0},
    "A100": {"bfloat16": 312.0, "float16": 312.0, "float32": 156.0},
    "L4": {"bfloat16": 121.0, "float16": 121.0, "float32": 60.0},
}


def peak_tflops(device_name, compute_dtype):
    """The dense peak of a known GPU for `compute_dtype`, or None."""
    for key, peaks in PEAK_TFLOPS.items():
        if key in (device_name or ""):
            return peaks.get(compute_dtype)
    return None


def matmul_params(model):
    """Parameters that enter a matmul once per token: everything but the embedding tables,
    plus the readout's `d x V` when it reuses the token embedding."""
    import numpy as np

    backbone = model.backbone
    tables = [w for w in backbone.weights if "embedding" in w.path and len(w.shape) == 2]
    n = model.count_params() - sum(int(np.prod(w.shape)) for w in tables)
    head_is_new = model.count_params() > backbone.count_params()
    if not head_is_new:  # tied: the readout multiplies by the token table
        n += backbone.vocabulary_size * backbone.hidden_dim
    return n


def model_flops(n_params, layers, hidden, seq, prompt):
    """`(per trained token, per generated token)`; see the module docstring."""
    train = 6 * n_params + 6 * layers * seq * hidden
    mean_keys = (prompt + 1 + seq) / 2  # generated tokens at positions prompt..seq-1
    generate = 2 * n_params + 4 * layers * mean_keys * hidden
    return train, generate


def device_name():
    import keras

    if keras.backend.backend() == "jax":
        import jax

        device = jax.devices()[0]
        return device.platform, device.device_kind
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return "cpu", "cpu"
    return "gpu", tf.config.experimental.get_device_details(gpus[0]).get("device_name", "gpu")


def _models(args):
    """`{"ours": ..., "keras_hub": ...}`, or only the one `--memory-of` names."""
    import keras
    import keras_hub

    from keras_unitscale.models import CausalLM
    from keras_unitscale.models.backbones import TransformerDecoderBackbone

    dims = dict(
        vocabulary_size=args.vocab, num_layers=args.layers, num_heads=args.heads,
        hidden_dim=args.hidden, intermediate_dim=4 * args.hidden, max_sequence_length=args.seq,
    )
    only = getattr(args, "memory_of", None)
    models = {}
    if only in (None, "ours"):
        models["ours"] = CausalLM(TransformerDecoderBackbone(**dims))
        models["ours"].compile(jit_compile=True)
    if only == "ours":
        return models
    theirs = keras_hub.models.GPT2CausalLM(
        keras_hub.models.GPT2Backbone(dropout=0.0, **dims), preprocessor=None
    )
    theirs.compile(
        optimizer=keras.optimizers.AdamW(1e-3, weight_decay=0.0),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        sampler="greedy",
        jit_compile=True,
    )
    models["keras_hub"] = theirs
    return models


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


def peak_memory_bytes():
    """Peak device memory of this process so far, or None where it cannot be read (CPU)."""
    import keras

    if keras.backend.backend() == "jax":
        import jax

        stats = jax.devices()[0].memory_stats() or {}
        return stats.get("peak_bytes_in_use")
    import tensorflow as tf

    if not tf.config.list_physical_devices("GPU"):
        return None
    return tf.config.experimental.get_memory_info("GPU:0")["peak"]


def _measure_memory(args):
    """Trains one model alone for a few steps: the process's peak device memory is then its
    training step's (weights, optimizer state, activations, workspace)."""
    import keras
    import numpy as np

    keras.config.set_dtype_policy(args.dtype_policy)
    model = _models(args)[args.memory_of]
    rng = np.random.default_rng(0)
    ids = rng.integers(5, args.vocab, (args.batch, args.seq + 1)).astype("int32")
    x = {"token_ids": ids[:, :-1], "padding_mask": np.ones((args.batch, args.seq), "int32")}
    for _ in range(3):
        model.train_on_batch(x, ids[:, 1:])
    return {"backend": keras.backend.backend(), "model": args.memory_of,
            "peak_bytes": peak_memory_bytes()}


def compiled_train_memory(model, x, y):
    """`{"temp_bytes", "argument_bytes"}` XLA plans for `model`'s jitted training step on
    `(x, y)` (JAX only): compiled, never run."""
    import jax

    data = (x, y, None)
    model._symbolic_build(data_batch=data)
    model.optimizer.build(model.trainable_variables)
    state = model._get_jax_state(
        trainable_variables=True, non_trainable_variables=True, optimizer_variables=True,
        metrics_variables=True, purge_model_variables=False,
    )
    compiled = jax.jit(model.train_step, donate_argnums=0).lower(state, data).compile()
    analysis = compiled.memory_analysis()
    return {"temp_bytes": int(analysis.temp_size_in_bytes),
            "argument_bytes": int(analysis.argument_size_in_bytes)}


def _measure_compiled_memory(args):
    import keras
    import numpy as np

    keras.config.set_dtype_policy(args.dtype_policy)
    result = {"backend": keras.backend.backend(), "dtype_policy": args.dtype_policy,
              "logits_bytes": 4 * args.batch * args.seq * args.vocab}
    if keras.backend.backend() != "jax":
        return dict(result, compiled_memory=None)
    rng = np.random.default_rng(0)
    ids = rng.integers(5, args.vocab, (args.batch, args.seq + 1)).astype("int32")
    x = {"token_ids": ids[:, :-1], "padding_mask": np.ones((args.batch, args.seq), "int32")}
    result["compiled_memory"] = {
        who: compiled_train_memory(model, x, ids[:, 1:]) for who, model in _models(args).items()
    }
    return result


def _measure(args):
    import keras
    import numpy as np

    if args.memory_of:
        return _measure_memory(args)
    if args.compiled_memory:
        return _measure_compiled_memory(args)
    keras.config.set_dtype_policy(args.dtype_policy)
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
    generate = None
    prompts = {
        "token_ids": np.where(np.arange(args.seq) < args.prompt, ids[:, :-1], 0).astype("int32"),
        "padding_mask": np.broadcast_to(np.arange(args.seq) < args.prompt, x["token_ids"].shape),
    }
    generate = None if not args.generate else _rounds(
        args,
        {name: (lambda m=m: m.generate(prompts, stop_token_ids=None))
         for name, m in models.items()},
        args.batch * (args.seq - args.prompt),
    )
    n = matmul_params(models["ours"])
    platform, name = device_name()
    compute_dtype = keras.config.dtype_policy().compute_dtype
    peak = args.peak_tflops or (peak_tflops(name, compute_dtype) if platform == "gpu" else None)
    per_token = model_flops(n, args.layers, args.hidden, args.seq, args.prompt)
    for result, flops in zip((train, generate), per_token):
        if result is None:
            continue
        for who in ("ours", "keras_hub"):
            tflops = result[f"tokens_per_s_{who}"] * flops / 1e12
            result[f"tflops_{who}"] = tflops
            result[f"mfu_{who}"] = None if peak is None else tflops / peak
    return {
        "backend": keras.backend.backend(),
        "device": name,
        "dtype_policy": args.dtype_policy,
        "peak_tflops": peak,
        "params_ours": models["ours"].count_params(),
        "params_keras_hub": models["keras_hub"].count_params(),
        "matmul_params": n,
        "flops_per_token": {"train": per_token[0], "generate": per_token[1]},
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
    parser.add_argument("--dtype-policy", default="float32",
                        help="Keras dtype policy of both models, e.g. mixed_bfloat16")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="device peak for MFU (default: looked up for known GPUs)")
    parser.add_argument("--generate", action=argparse.BooleanOptionalAction, default=True,
                        help="also time generate() (--no-generate: training only)")
    parser.add_argument("--memory", action="store_true",
                        help="also the peak device memory of each model's training step, "
                             "each trained alone in its own process (GPUs only)")
    parser.add_argument("--compiled-memory", action="store_true",
                        help="instead of timing: the temporary memory XLA plans for each "
                             "model's compiled training step (JAX; CPUs too)")
    parser.add_argument("--memory-of", choices=["ours", "keras_hub"], help=argparse.SUPPRESS)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_measure(args)))
        return
    keys = ["vocab", "layers", "heads", "hidden", "seq", "batch", "prompt", "steps", "rounds",
            "dtype_policy", "peak_tflops"]
    shape = (f"vocab {args.vocab}, {args.layers} layers, width {args.hidden}, "
             f"{args.heads} heads, batch {args.batch}, seq {args.seq}")
    if args.compiled_memory:
        for r in measure_in_children(__file__, args.backend or ["jax"],
                                     options_of(args, keys) + ["--compiled-memory"]):
            m = r["compiled_memory"]
            if m is None:
                print(f"  compiled {r['backend']:>10}: not available (JAX only)")
                continue
            ours, theirs = m["ours"]["temp_bytes"], m["keras_hub"]["temp_bytes"]
            print(f"  compiled {r['backend']:>10}: temporary memory of a training step, ours "
                  f"{ours / 2**20:,.1f} MiB ({ours / r['logits_bytes']:.2f} float32 logits), "
                  f"keras_hub {theirs / 2**20:,.1f} MiB ({theirs / r['logits_bytes']:.2f}), "
                  f"ratio {ours / theirs:.3f} ({shape}, {r['dtype_policy']})")
            print(json.dumps(r))
        return
    for r in measure_in_children(__file__, args.backend or ["tensorflow", "jax"],
                                 options_of(args, keys)
                                 + ([] if args.generate else ["--no-generate"])):
        for kind in ("train", "generate"):
            m = r[kind]
            if m is None:
                continue
            mfu = "" if m["mfu_ours"] is None else (
                f", MFU ours {m['mfu_ours']:.1%} keras_hub {m['mfu_keras_hub']:.1%}"
            )
            print(
                f"{kind:>8} {r['backend']:>10}: ours {m['tokens_per_s_ours']:,.0f} tokens/s, "
                f"keras_hub {m['tokens_per_s_keras_hub']:,.0f} tokens/s, ratio "
                f"{m['ratio']:.3f}; model TFLOP/s ours {m['tflops_ours']:.3g} keras_hub "
                f"{m['tflops_keras_hub']:.3g}{mfu} ({shape}, {r['dtype_policy']} on "
                f"{r['device']})"
            )
        print(json.dumps(r))
    if args.memory:
        for backend in args.backend or ["tensorflow", "jax"]:
            peaks = {}
            for who in ("ours", "keras_hub"):
                (m,) = measure_in_children(__file__, [backend],
                                           options_of(args, keys) + [f"--memory-of={who}"])
                peaks[who] = m["peak_bytes"]
            if None in peaks.values():
                print(f"  memory {backend:>10}: peak device memory not readable here (CPU)")
                continue
            print(f"  memory {backend:>10}: peak device memory of a training step, ours "
                  f"{peaks['ours'] / 2**30:.2f} GiB, keras_hub {peaks['keras_hub'] / 2**30:.2f} "
                  f"GiB, ratio {peaks['ours'] / peaks['keras_hub']:.3f}")


if __name__ == "__main__":
    main()
