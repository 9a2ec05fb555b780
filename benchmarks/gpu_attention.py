"""Fused against einsum attention on one GPU under JAX: which kernel runs, agreement, time.

    KERAS_BACKEND=jax python benchmarks/gpu_attention.py [--batch 16 --seq 1024 --heads 12]

For `keras_unitscale.ops.dot_product_attention` in bfloat16 with a causal mask and a padding
mask that keeps a prefix of the keys (what the preprocessors make), it prints whether the
optimized HLO of the jitted forward and backward holds cuDNN's fused attention custom call,
the relative error of each implementation's output and input gradients against a float32
einsum reference (`||out - ref|| / ||ref||`), and the median time of a jitted forward plus
backward of each, with the ratio einsum / fused (above 1: fused faster). The inputs live on the
device before timing. `floor` is `jax.nn.dot_product_attention` itself (causal, no padding,
no output scale), what the fused path costs at best. On a CPU it runs too (XLA's attention;
the HLO check then says no, and there is no floor).
"""

import argparse
import time

import numpy as np


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq", type=int, default=1024)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()

    import jax
    import jax.numpy as jnp

    from keras_unitscale import ops as uops

    b, s, h, d = args.batch, args.seq, args.heads, args.head_dim
    rng = np.random.default_rng(0)
    q, k, v, g = (
        jax.device_put(rng.standard_normal((b, s, h, d)).astype("float32")) for _ in range(4)
    )
    lengths = np.full((b,), s)
    lengths[::2] = s - s // 8  # every other row padded by an eighth
    mask = jax.device_put((np.arange(s)[None, :] < lengths[:, None])[:, None, :])

    def loss(impl, dtype):
        def f(q, k, v):
            q, k, v = q.astype(dtype), k.astype(dtype), v.astype(dtype)
            if impl == "floor":
                out = jax.nn.dot_product_attention(
                    q, k, v, scale=1.0 / d, is_causal=True, implementation="cudnn"
                )
            else:
                out = uops.dot_product_attention(
                    q, k, v, mask=mask, is_causal=True, implementation=impl
                )
            return jnp.sum(out.astype("float32") * g), out

        return jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2), has_aux=True))

    with jax.default_matmul_precision("highest"):
        (_, ref_out), ref_grads = loss("einsum", "float32")(q, k, v)
    ref = [np.asarray(t, "float64") for t in (ref_out, *ref_grads)]
    print(f"device: {jax.devices()[0].device_kind}, jax {jax.__version__}; "
          f"batch {b}, seq {s}, heads {h}, head_dim {d}, bfloat16, causal + prefix padding")
    times = {}
    gpu = jax.devices()[0].platform == "gpu"
    for impl in ("fused", "einsum") + (("floor",) if gpu else ()):
        fn = loss(impl, "bfloat16")
        hlo = fn.lower(q, k, v).compile().as_text()
        (_, out), grads = fn(q, k, v)
        errors = [] if impl == "floor" else [
            float(np.linalg.norm(np.asarray(t, "float64") - r) / np.linalg.norm(r))
            for t, r in zip((out, *grads), ref)
        ]
        runs = []
        for _ in range(args.repeats + 3):
            start = time.perf_counter()
            jax.block_until_ready(fn(q, k, v))
            runs.append(time.perf_counter() - start)
        times[impl] = float(np.median(runs[3:]))
        print(f"{impl:>7}: cuDNN fused attention in HLO: {'cudnn' in hlo and 'fmha' in hlo}; "
              f"rel. error out/dq/dk/dv {', '.join(f'{e:.1e}' for e in errors)}; "
              f"forward+backward {1e3 * times[impl]:.2f} ms")
    print(f"einsum / fused time: {times['einsum'] / times['fused']:.2f}")


if __name__ == "__main__":
    main()
