"""Position information: learned tables, sinusoids and rotary embeddings.

- A learned table `[max_length, dim]` is N(0, 1), so its rows are unit. Each row used is
  added to every sequence of the batch once: its gradient sums `batch` unit values and is
  scaled by `batch ** -0.5` (the embedding rule `sqrt(vocab / num_tokens)` with every
  position used once per sequence).
- Sinusoids: each (sin, cos) pair at one frequency has `sin^2 + cos^2 = 1`, so the encoding
  has RMS `2 ** -0.5` over its features; it is multiplied by `sqrt(2)` to be unit.
- Rotary embeddings rotate pairs of features by position-dependent angles. A rotation
  preserves norms (and, transposed, the gradient's), so no scale is needed.
Positions start at `start_index` (a cache index when decoding one token at a time), which may
be a scalar tensor.
"""

import math

from keras import ops

from keras_unitscale.ops.scale import leading_size, rsqrt_size, scale_bwd


def _positions(length, start_index):
    return ops.arange(length, dtype="float32") + ops.cast(start_index, "float32")


def _inverse_frequencies(num_pairs, max_wavelength):
    exponents = ops.arange(num_pairs, dtype="float32") / float(num_pairs)
    return ops.power(float(max_wavelength), -exponents)


def position_embedding(table, inputs, start_index=0):
    """Rows `start_index ...` of a learned `table` for `inputs [batch, length, dim]`,
    broadcast to the inputs' shape, with a unit-scaled table gradient.

    Example:
    >>> import numpy as np
    >>> from keras_unitscale import ops as uops
    >>> table = np.arange(8, dtype="float32").reshape(4, 2)
    >>> out = uops.position_embedding(table, np.zeros((1, 2, 2)), start_index=1)
    >>> np.asarray(out).tolist()
    [[[2.0, 3.0], [4.0, 5.0]]]
    """
    length, dim = ops.shape(inputs)[-2], int(table.shape[-1])
    batch = leading_size(inputs, trailing_dims=2)
    table = scale_bwd(ops.convert_to_tensor(table), rsqrt_size(batch))
    rows = ops.slice(table, (ops.cast(start_index, "int32"), 0), (length, dim))
    return ops.broadcast_to(ops.cast(rows, inputs.dtype), ops.shape(inputs))


def sinusoidal_encoding(length, dim, start_index=0, max_wavelength=10000.0, dtype="float32"):
    """`[length, dim]` unit-RMS encoding: `sqrt(2) * [sin(p w_i), cos(p w_i)]`.

    Example:
    >>> import numpy as np
    >>> from keras_unitscale import ops as uops
    >>> enc = np.asarray(uops.sinusoidal_encoding(512, 64))
    >>> enc.shape, round(float(np.sqrt(np.mean(enc ** 2))), 3)
    ((512, 64), 1.0)
    """
    if int(dim) % 2:
        raise ValueError(f"`dim` of a sinusoidal encoding must be even; received {dim}.")
    angles = _positions(length, start_index)[:, None] * _inverse_frequencies(
        int(dim) // 2, max_wavelength
    )[None, :]
    enc = ops.concatenate([ops.sin(angles), ops.cos(angles)], axis=-1) * math.sqrt(2.0)
    return ops.cast(enc, dtype)


def rotary_embedding(x, start_index=0, max_wavelength=10000.0, sequence_axis=1):
    """Rotates feature pairs `(x_i, x_{i + d/2})` of `x` by `position * w_i`.

    `x` has its sequence on `sequence_axis` and features (even size `d`) on the last axis,
    e.g. `[batch, length, heads, head_dim]`.

    Example:
    >>> import numpy as np
    >>> from keras_unitscale import ops as uops
    >>> x = np.random.default_rng(0).standard_normal((2, 16, 4, 8)).astype("float32")
    >>> y = np.asarray(uops.rotary_embedding(x))
    >>> bool(np.allclose(np.linalg.norm(y, axis=-1), np.linalg.norm(x, axis=-1), atol=1e-5))
    True
    """
    dim = x.shape[-1]
    if dim is None or int(dim) % 2:
        raise ValueError(
            f"Rotary embeddings need an even, static last dimension; received shape {x.shape}."
        )
    rank = len(x.shape)
    axis = sequence_axis % rank
    angles = _positions(ops.shape(x)[axis], start_index)[:, None] * _inverse_frequencies(
        int(dim) // 2, max_wavelength
    )[None, :]
    # [length, d/2] -> broadcastable against x: length on `axis`, features last.
    shape = [1] * rank
    shape[axis] = -1
    shape[-1] = int(dim) // 2
    cos = ops.reshape(ops.cos(angles), shape)
    sin = ops.reshape(ops.sin(angles), shape)
    x32 = ops.cast(x, "float32")
    x1, x2 = ops.split(x32, 2, axis=-1)
    y = ops.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
    return ops.cast(y, x.dtype)
