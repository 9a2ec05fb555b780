"""Softmax cross-entropy whose value is the usual one and whose logit gradient is unit.

At initialisation the logits are small, so `softmax ~ 1/V`. The gradient of one token's loss
with respect to its logits is `softmax - onehot`: `V - 1` entries near `1/V` and one near
`1/V - 1`. Its mean square is `((V-1)/V^2 + (V-1)^2/V^2) / V = (V-1)/V^2`, so the std is
`sqrt(V-1)/V` and the unit-making scale is `V / sqrt(V-1)`. A mean over `N` tokens divides
each token's gradient by `N`; we multiply it back, so the scale is `N * V / sqrt(V-1)`, where
`N` is the number of tokens the reduction averages over (the valid ones, under a mask).
"""

from keras import ops

from keras_unitscale.backend import num_replicas_in_sync
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
    token in `labels` (a plain mean). Use `count=1` for a summed loss.
    """
    vocab = logits.shape[-1]
    if vocab is None:
        raise ValueError(f"`logits` need a static last dimension; got shape {logits.shape}.")
    if count is None:
        count = leading_size(labels, trailing_dims=0)
    logits = ops.cast(logits, "float32")
    logits = scale_bwd(logits, logit_grad_scale(int(vocab), count))
    return ops.sparse_categorical_crossentropy(
        ops.cast(labels, "int32"), logits, from_logits=True
    )


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
