"""Scaled embedding lookup.

The forward pass is a plain gather: the table is unit-normal, so its rows are too. In the
backward pass a row's gradient sums the upstream gradients of every token that picked it:
about `num_tokens / vocab` unit values for uniformly spread ids, std
`sqrt(num_tokens / vocab)`. The table gradient is therefore scaled by
`sqrt(vocab / num_tokens)`. The table is a weight, so the scale is never constrained.
"""

from keras import ops

from keras_unitscale.ops.scale import leading_size, rsqrt_size, scale_bwd, static_scale


def embedding(ids, table):
    """Looks up `table[ids]` with a unit-scaled table gradient.

    Example:
    >>> import numpy as np
    >>> from keras_unitscale import ops as uops
    >>> table = np.arange(6, dtype="float32").reshape(3, 2)
    >>> np.asarray(uops.embedding(np.array([[2, 0]]), table)).tolist()
    [[[4.0, 5.0], [0.0, 1.0]]]
    """
    vocab = int(table.shape[0])
    num_tokens = leading_size(ids, trailing_dims=0)
    if static_scale(num_tokens) is not None:
        grad_scale = (vocab / max(num_tokens, 1)) ** 0.5
    else:
        grad_scale = rsqrt_size(num_tokens) * vocab**0.5
    table = scale_bwd(table, grad_scale)
    return ops.take(table, ops.cast(ids, "int32"), axis=0)
