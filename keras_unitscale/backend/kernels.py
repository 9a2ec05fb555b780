"""The backends' fused kernels that `keras.ops` does not expose or does not choose: the fused
LSTM / GRU (cuDNN) and Keras' recurrent loop, cuDNN's flash attention, whether Keras'
float32 cross-entropy runs on a fused kernel of the backend's own, and the exact GELU written
the way XLA computes cheaply on every backend.
"""

import math

import keras
from keras import ops

from keras_unitscale.backend._common import backend_name


def has_fused_float32_cross_entropy():
    """Whether Keras' float32 sparse cross-entropy runs on a fused kernel of the backend's own
    that is both faster and no larger than ours (TensorFlow's
    `SparseSoftmaxCrossEntropyWithLogits`: CausalLM training on CPU fell to 0.92x KerasHub with
    our op). On JAX, Keras' loss keeps a one-hot and log-probabilities, so ours is used."""
    return backend_name() == "tensorflow"


def exact_gelu(x):
    """The exact GELU `x * Phi(x)`, written as JAX's `keras.ops.gelu(x, approximate=False)`
    writes it on every backend: `x * (erf(x / sqrt(2)) + 1) / 2`.

    On TensorFlow, Keras' op is `tf.nn.gelu`, which writes it with `erfc(-x / sqrt(2))`: XLA
    expands that `erfc` into an exponential, a division and two branches, and on CPUs ran
    the forward GELU as three passes over the `[tokens, 4 width]` activations (the
    exponential, the `erfc`, the product) where `erf`'s polynomial takes two (the `erf`,
    kept for the backward pass, and the product), as a tanh-approximated GELU does. The two
    differ by float32 rounding: over [-12, 12], at most 1.5e-6 in value and 2.4e-7 in slope;
    relative to the value, up to 0.6% in the negative tail near `x = -4` (where GELU is about
    -1e-4 and `1 + erf` cancels), as JAX's own op does. On JAX this is `keras.ops.gelu`.
    """
    if backend_name() == "jax":
        return ops.gelu(x, approximate=False)
    return x * (ops.erf(x / math.sqrt(2.0)) + 1.0) / 2.0


def cudnn_disables_jit(cell="lstm", unroll=False, use_bias=True):
    """Whether TensorFlow would run a fused cuDNN RNN kernel, which XLA cannot compile.

    Keras' own LSTM and GRU then turn `jit_compile` off; ours do the same. Never on JAX.
    """
    if backend_name() != "tensorflow":
        return False
    from keras.src import backend as keras_backend

    reset_after = True if cell == "gru" else None
    return keras_backend.cudnn_ok(
        keras.activations.tanh, keras.activations.sigmoid, unroll, use_bias, reset_after
    )


def rnn(step, inputs, states, **kwargs):
    """Keras' own recurrent loop over `inputs: [batch, time, ...]` (`keras.src.backend.rnn`:
    the backend's while loop or scan), as `keras.layers.RNN` runs it; keyword arguments and
    the result `(last_output, outputs, new_states)` are Keras'."""
    from keras.src import backend as keras_backend

    return keras_backend.rnn(step, inputs, states, **kwargs)


def fused_rnn(cell, inputs, states, mask, kernel, recurrent_kernel, bias, **kwargs):
    """The backend's fused LSTM or GRU kernel (`cell`: `"lstm"` or `"gru"`), with tanh and
    sigmoid and, for the GRU, `reset_after=True`: cuDNN where Keras' LSTM / GRU would use it,
    JAX's scan GRU. Raises `NotImplementedError` where it cannot run (as Keras' does);
    keyword arguments and the result are those of `rnn`."""
    from keras.src import backend as keras_backend

    weights = dict(
        kernel=kernel, recurrent_kernel=recurrent_kernel, bias=bias,
        activation=keras.activations.tanh, recurrent_activation=keras.activations.sigmoid,
    )
    if cell == "lstm":
        return keras_backend.lstm(inputs, states[0], states[1], mask, **weights, **kwargs)
    return keras_backend.gru(inputs, states[0], mask, **weights, reset_after=True, **kwargs)


def fused_attention(query, key, value, mask, scale, is_causal):
    """`softmax(scale * q k^T) v` through `keras.ops.dot_product_attention`, `[B, T, H, D]`.

    `mask` is `None` or boolean `[batch or 1, heads or 1, T or 1, S]`; `is_causal` is the
    kernel's own causal mask (query `i` sees keys `j <= i`). Where `cudnn_attention_available`,
    cuDNN's flash attention runs: a key padding mask (`[batch, 1, 1, S]`) that keeps a prefix
    of each row's keys, which a run-time check confirms, is given as key lengths; any other
    mask as an additive bias (as Keras' `MultiHeadAttention` does), which the kernel reads
    instead of skipping the masked blocks. Elsewhere it is XLA's attention (on TensorFlow,
    Keras' own).
    """
    if not cudnn_attention_available(query, key):
        return ops.dot_product_attention(
            query, key, value, mask=mask, scale=scale, is_causal=is_causal,
            flash_attention=False,
        )
    import jax

    def attend(implementation, mask=None, lengths=None):
        return jax.nn.dot_product_attention(
            query, key, value, mask=mask, scale=scale, is_causal=is_causal,
            key_value_seq_lengths=lengths, implementation=implementation,
        )

    def masked():
        # cuDNN takes a bias with the full [T, S] extent only (broadcast over batch and heads).
        full = jax.numpy.broadcast_to(
            mask, tuple(mask.shape[:2]) + (query.shape[1], key.shape[1])
        )
        try:
            return attend("cudnn", mask=full)
        except Exception:  # a shape or version cuDNN does not take
            return attend("xla", mask=mask)

    if mask is None:
        try:
            return attend("cudnn")
        except Exception:
            return attend("xla")
    if tuple(mask.shape[1:3]) != (1, 1) or mask.shape[0] != query.shape[0]:
        return masked()
    keep = mask[:, 0, 0, :]
    lengths = jax.numpy.sum(keep, axis=-1, dtype="int32")
    prefix = jax.numpy.arange(keep.shape[-1])[None, :] < lengths[:, None]
    is_prefix = jax.numpy.all((keep == prefix) & (lengths > 0)[:, None])
    try:
        # Both branches are cuDNN's kernel, whose residuals for the backward pass are small:
        # the branch not taken must still produce the other's residuals (as zeros).
        return jax.lax.cond(is_prefix, lambda: attend("cudnn", lengths=lengths), masked)
    except Exception:
        return masked()


def cudnn_attention_available(query, key):
    """Whether `fused_attention` runs cuDNN's flash attention for these inputs: JAX on an
    NVIDIA GPU, static shapes, 16-bit inputs, a head size that is a multiple of 8 up to 128."""
    if backend_name() != "jax":
        return False
    import jax

    if jax.devices()[0].platform != "gpu":
        return False
    dtype = keras.backend.standardize_dtype(query.dtype)
    head_dim = query.shape[-1]
    static = all(isinstance(d, int) for d in tuple(query.shape) + tuple(key.shape))
    return static and dtype in ("bfloat16", "float16") and head_dim % 8 == 0 and head_dim <= 128
