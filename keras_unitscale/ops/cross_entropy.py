"""Softmax cross-entropy whose value is the usual one and whose logit gradient is unit.

At initialisation the logits are small, so `softmax ~ 1/V`. The gradient of one token's loss
with respect to its logits is `softmax - onehot`: `V - 1` entries near `1/V` and one near
`1/V - 1`. Its mean square is `((V-1)/V^2 + (V-1)^2/V^2) / V = (V-1)/V^2`, so the std is
`sqrt(V-1)/V` and the unit-making scale is `V / sqrt(V-1)`. A mean over `N` tokens divides
each token's gradient by `N`; we multiply it back, so the scale is `N * V / sqrt(V-1)`, where
`N` is the number of tokens the reduction averages over (the valid ones, under a mask).

How it is computed. The per-token loss is `logsumexp(z) - z[label]` (the label's logit
gathered, not picked by a masked sum over the vocabulary), with its own backward
`(exp(z - logsumexp(z)) - onehot(label)) * upstream * scale`, written straight in the logits'
dtype. The `[tokens, vocabulary]` logits are then read by one reduction forward and one
elementwise pass backward, and the backward keeps nothing of that size but the logits
themselves: Keras' loss keeps log-probabilities (in float32, and casts their gradient back,
under a 16-bit policy) and, on XLA:CPU, a one-hot and a transposed gradient too. A JAX
training step of a GPT-2-style model at vocabulary 50257 plans 2.4 float32
`[tokens, vocabulary]` tensors of temporaries with this op against 3.4 with Keras' loss
(`benchmarks/causal_lm.py --compiled-memory`). The statistics are computed in float32 under
16-bit policies all the same. The value equals Keras'
`sparse_categorical_crossentropy(from_logits=True)` to float rounding. On TensorFlow, float32
logits keep Keras' loss with `scale_bwd` on the logits: TensorFlow's fused kernel behind it
keeps no more and is faster on CPUs.
"""

import keras
from keras import ops

from keras_unitscale.backend import (
    custom_gradient,
    has_fused_float32_cross_entropy,
    num_replicas_in_sync,
)
from keras_unitscale.ops.scale import leading_size, scale_bwd, static_scale


def logit_grad_scale(vocab, count):
    """`count * vocab / sqrt(vocab - 1)` for a static or dynamic `count`."""
    factor = vocab / max(vocab - 1, 1) ** 0.5
    if static_scale(count) is not None:
        return float(count) * factor
    return ops.cast(count, "float32") * factor


def per_token_cross_entropy(labels, logits, count=None):
    """Per-token `-log softmax(logits)[label]` with the unit-scaled logit gradient.

    `count` is the number of tokens the caller's reduction averages over; by default, every
    token in `labels` (a plain mean). Use `count=1` for a summed loss. The result is float32.
    """
    vocab = logits.shape[-1]
    if vocab is None:
        raise ValueError(f"`logits` need a static last dimension; got shape {logits.shape}.")
    if count is None:
        count = leading_size(labels, trailing_dims=0)
    logits = ops.convert_to_tensor(logits)
    scale = logit_grad_scale(int(vocab), count)
    if (
        keras.backend.standardize_dtype(logits.dtype) == "float32"
        and has_fused_float32_cross_entropy()
    ):
        # TensorFlow's fused kernel behind Keras' loss keeps no more than the op below, and
        # is faster on CPUs (CausalLM training 0.92x KerasHub with the op below).
        logits = scale_bwd(logits, scale)
        return ops.sparse_categorical_crossentropy(
            ops.cast(labels, "int32"), logits, from_logits=True
        )
    return fused_cross_entropy(labels, logits, scale)


def fused_cross_entropy(labels, logits, scale):
    """Per-token cross-entropy with its own backward, `scale` times the logit gradient,
    written in the logits' dtype (the module docstring says why)."""
    # Labels travel as float32 (exact below 2 ** 24) so that every input of the custom
    # gradient is a float tensor.
    labels = ops.cast(labels, "float32")
    if static_scale(scale) is not None:
        return custom_gradient(lambda z, y: _cross_entropy(z, y, scale))(logits, labels)
    return custom_gradient(_cross_entropy)(logits, labels, ops.cast(scale, "float32"))


def _cross_entropy(logits, labels, scale):
    z = ops.cast(logits, "float32")
    lse = ops.logsumexp(z, axis=-1)
    # A gather, not a masked sum: a reduction over `[tokens, vocabulary]` would materialise
    # its masked input on XLA:CPU.
    index = ops.expand_dims(ops.cast(labels, "int32"), -1)
    picked = ops.squeeze(ops.take_along_axis(z, index, axis=-1), -1)

    def grad(g):
        upstream = ops.expand_dims(ops.cast(g, "float32") * ops.cast(scale, "float32"), -1)
        onehot = ops.equal(
            ops.arange(z.shape[-1], dtype="float32"), ops.expand_dims(labels, -1)
        )
        dz = (ops.exp(z - ops.expand_dims(lse, -1)) - ops.cast(onehot, "float32")) * upstream
        others = (ops.zeros_like(labels),)
        if static_scale(scale) is None:
            others += (ops.zeros_like(scale),)
        return (ops.cast(dz, logits.dtype),) + others

    return lse - picked, grad


def sparse_softmax_cross_entropy(labels, logits, sample_weight=None, mask=None):
    """Mean sparse softmax cross-entropy from logits, with a unit-scaled logit gradient.

    Equals Keras' `SparseCategoricalCrossentropy(from_logits=True)` with its default
    reduction: `sum(w * loss) / N`, where a padding `mask` (true = keep) restricts the mean to
    the valid tokens.

    Example:
    >>> import numpy as np
    >>> from keras_unitscale import ops as uops
    >>> logits = np.zeros((2, 4), "float32")
    >>> round(float(uops.sparse_softmax_cross_entropy(np.array([0, 3]), logits)), 4)
    1.3863
    """
    if mask is not None:
        mask = ops.cast(mask, "float32")
        # Per replica, as the unmasked mean: this replica's share of a global mean whose
        # count is taken as `replicas` times the local one (what Keras' losses divide by).
        count = ops.sum(mask) * num_replicas_in_sync()
    else:
        count = leading_size(labels, trailing_dims=0)
    losses = per_token_cross_entropy(labels, logits, count=count)
    weights = ops.ones_like(losses)
    if sample_weight is not None:
        weights = weights * ops.cast(sample_weight, "float32")
    if mask is not None:
        weights = weights * mask
    return ops.divide_no_nan(ops.sum(losses * weights), ops.cast(count, "float32"))
