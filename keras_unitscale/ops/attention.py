"""Unit-scaled scaled-dot-product attention.

Layout: `query [batch, T, heads, d_head]`, `key [batch, S, heads, d_head]`,
`value [batch, S, heads, d_value]` (as `keras.ops.dot_product_attention`).

Logits. u-muP scales the logits by `mult / d_head`, not `1 / sqrt(d_head)`. For unit `q` and
`k`, `q . k` has std `sqrt(d_head)`, so at initialisation the logits have std
`sigma = mult / sqrt(d_head)` (0.125 for `d_head = 64`): attention starts nearly uniform.
Once training aligns `q` with `k`, `q . k` grows like `d_head` and the logits like `mult`,
independent of width, which is the point of the `1 / d_head` rule.

Output scale. The output `o_i = sum_j p_ij v_j` of unit, independent values has variance
`sum_j p_ij ** 2`. For `n` keys with logits of std `sigma`, `p_j ~ e^{x_j} / (n E[e^x])`, so
`sum_j p_j ** 2 ~ n E[e^{2x}] / (n E[e^x]) ** 2 = e^{sigma ** 2} / n`, at most 1 (one-hot).
- Non-causal rows all see `S` keys: uniform attention gives variance `v0 = 1 / S`.
- A causal row `t` sees `t + 1` keys, variance `1 / (t + 1)`; averaged over the `S` rows,
  `v0 = H_S / S` with `H_S = 1 + 1/2 + ... + 1/S ~ ln S + 0.577` (Graphcore uses `ln S / S`;
  the exact harmonic number is 12% larger at `S = 128` and costs nothing).
As attention sharpens the variance rises from `v0` to 1. The lognormal estimate
`e^{sigma^2} v0` is right for `sigma` below about 1 but overshoots badly once a few keys
dominate the softmax (for `S = 128` it predicts 0.30 at `sigma = 2`; simulation gives 0.11).
We therefore interpolate in log space, `var = v0 ** (1 - alpha)` with
`alpha = sigma^2 / (sigma^2 + 4)`, the empirical model of Graphcore's `unit-scaling`:
exact as `sigma -> 0`, 1 as `sigma -> inf`, halfway (geometrically) at `sigma = 2`. That is
where the lognormal estimate fails: `sum_j p_j^2 = sum_j e^{2 x_j} / (sum_j e^{x_j})^2`, and
the numerator is carried by its few largest terms once `2 sigma > sqrt(2 ln n)` (`sigma >
1.6` for `n = 128`). Against simulated softmaxes (`S` in 16..1024, `sigma` in 0.125..6,
causal and not) the model stays within 22% in std; at initialisation, within 1%.
The scale is `var ** -0.5`. For `S = 128`, uniform attention would give `sqrt(S / H_S)` =
4.85 (causal) and `sqrt(S)` = 11.31; with `d_head = 64`, `mult = 1` the slight sharpening
makes them 4.82 and 11.21.

Backward. The scale is a plain multiply of the output, so the gradients of `q`, `k` and `v`
get the same factor, as a constraint demands (all three are non-cut edges). `dv_j` sums
`p_ij g_i` over the rows that see key `j`; averaged over keys its variance is again `v0`, so
the value gradient is unit. `dq_i = mult / d_head * sum_j p_ij (g_i . v_j - <g_i . v>) k_j`
has std about `mult / sqrt(d_head) = sigma` (0.125 for `d_head = 64`; less in causal
attention, whose first rows have few keys): query and key gradients start small, as in
Graphcore's library (often quoted as `~ S^-1/2`: 0.088 at `S = 128`).

The causal rule makes the output unit on average over positions, not at each: row `t` has
std `sqrt(S / H_S / (t + 1))`, from 4.8 at the first position to 0.43 at the last (`S = 128`).

With `T` queries and `S` keys and no causal mask, `dv` sums `T` rows of weight `~1/S`: its
std is `sqrt(T / S)`, unit for self-attention, smaller when few queries attend to many keys
(cross-attention from a short target). One shared scale cannot serve both; the output wins.

Dropout on the probabilities uses `keras_unitscale.ops.dropout`'s rule, `mask * p /
sqrt(1 - rate)`, which leaves `E[sum_j (m_j p_j) ** 2 / (1 - rate)] = sum_j p_j ** 2`
unchanged: no correction to the scale is needed.

The scale is a Python float from static shapes (a scalar tensor when the key length is only
known at run time). It depends on the number of keys `S`, not on the number of queries: a
decoding cache of length `S` therefore reproduces a full causal pass over `S` tokens exactly,
but a model run at a length other than its training length sees a different scale.
"""

import math

from keras import ops

from keras_unitscale.ops.dropout import dropout as _dropout
from keras_unitscale.ops.dropout import validate_rate
from keras_unitscale.ops.residual import residual_taus
from keras_unitscale.ops.scale import leading_size, rsqrt_size, scale_bwd, static_scale

_SHARPENING = 4.0  # sigma^2 at which the variance is halfway (in log space) from v0 to 1
_EULER_GAMMA = 0.5772156649015329


def attention_output_scale(num_keys, head_dim, mult=1.0, causal=False):
    """The forward (and q, k, v gradient) scale of unit-scaled attention; see the docstring.

    `num_keys` may be a scalar tensor when the key length is only known at run time; the
    harmonic number is then, as for Python ints, `ln S + 0.5772 + 1/(2S) - 1/(12S^2)`
    (within 0.6% of the exact sum at `S = 1`, 1e-6 from `S = 10`).

    Example:
    >>> from keras_unitscale import ops as uops
    >>> round(uops.attention_output_scale(128, 64), 2)
    11.21
    >>> round(uops.attention_output_scale(128, 64, causal=True), 2)
    4.82
    """
    head_dim = int(head_dim)
    if head_dim <= 0:
        raise ValueError(f"`head_dim` must be positive; received {head_dim}.")
    sigma_sq = float(mult) ** 2 / head_dim
    # scale = var ** -0.5 = (1 / v0) ** (0.5 * (1 - alpha))
    exponent = 0.5 * (1.0 - sigma_sq / (sigma_sq + _SHARPENING))
    if static_scale(num_keys) is not None:
        n = float(num_keys)
        if n <= 0:
            raise ValueError(f"`num_keys` must be positive; received {num_keys}.")
        inv_var = n / _harmonic(n, math.log) if causal else n
        return inv_var**exponent
    n = ops.maximum(ops.cast(num_keys, "float32"), 1.0)
    inv_var = n / _harmonic(n, ops.log) if causal else n
    return ops.power(inv_var, exponent)


def _harmonic(n, log):
    return log(n) + _EULER_GAMMA + 0.5 / n - 1.0 / (12.0 * n * n)


def causal_mask(query_length, key_length, query_offset=0):
    """Boolean `[query_length, key_length]`: query `i` (at position `i + query_offset`) sees
    keys `j <= i + query_offset`. `query_offset` may be a scalar tensor (a cache index)."""
    i = ops.arange(query_length, dtype="int32")[:, None] + ops.cast(query_offset, "int32")
    j = ops.arange(key_length, dtype="int32")[None, :]
    return ops.greater_equal(i, j)


def _check(query, key, value, mask):
    for name, t in (("query", query), ("key", key), ("value", value)):
        if len(t.shape) != 4:
            raise ValueError(
                f"`{name}` must have rank 4 [batch, length, num_heads, head_dim]; "
                f"received shape {tuple(t.shape)}."
            )
    if _static(query.shape[-1]) is None or _static(query.shape[-1]) != _static(key.shape[-1]):
        raise ValueError(
            "`query` and `key` must share a static head dimension; received shapes "
            f"{tuple(query.shape)} and {tuple(key.shape)}."
        )
    key_length, value_length = _static(key.shape[1]), _static(value.shape[1])
    if None not in (key_length, value_length) and key_length != value_length:
        raise ValueError(
            "`key` and `value` must have the same length; received shapes "
            f"{tuple(key.shape)} and {tuple(value.shape)}."
        )
    if mask is not None and len(mask.shape) not in (3, 4):
        raise ValueError(
            "`mask` must have rank 3 [batch, query_length, key_length] or rank 4 "
            f"[batch, num_heads, query_length, key_length]; received shape {tuple(mask.shape)}."
        )


def dot_product_attention(
    query,
    key,
    value,
    mask=None,
    is_causal=False,
    query_offset=0,
    mult=1.0,
    dropout_rate=0.0,
    seed=None,
    return_scores=False,
    value_bias=None,
):
    """Unit-scaled attention `scale * softmax(mult / d_head * q k^T) v`.

    Args:
        query: `[batch, T, heads, d_head]`.
        key: `[batch, S, heads, d_head]`.
        value: `[batch, S, heads, d_value]`.
        mask: optional boolean, `True` where attention is allowed; `[batch, T, S]` (also
            broadcastable: `[1, T, S]`, `[batch, 1, S]`) or `[batch, heads, T, S]`.
        is_causal: also mask keys after each query's position, and use the causal scale.
        query_offset: position of the first query among the keys (a cache index when
            decoding one token at a time); an int or scalar tensor.
        mult: u-muP attention multiplier (softmax temperature is `d_head / mult`).
        dropout_rate: dropout on the probabilities (pass 0 at inference).
        seed: seed or `keras.random.SeedGenerator` for the dropout.
        return_scores: also return the probabilities `[batch, heads, T, S]` (before dropout).
        value_bias: optional `[heads, d_value]` bias of the value projection. The
            probabilities sum to one, so adding it to every value equals adding it to the
            output; it is added after the output scale (which would otherwise multiply a
            constant by `sqrt(S)`), and its gradient, a sum over `batch * T` outputs, is
            scaled by `(batch * T) ** -0.5`.

    Example:
    >>> import numpy as np
    >>> from keras_unitscale import ops as uops
    >>> rng = np.random.default_rng(0)
    >>> q, k, v = (rng.standard_normal((4, 128, 2, 64)).astype("float32") for _ in range(3))
    >>> out = np.asarray(uops.dot_product_attention(q, k, v, is_causal=True))
    >>> out.shape, bool(abs(out.std() - 1) < 0.1)
    ((4, 128, 2, 64), True)
    """
    query, key, value = (ops.convert_to_tensor(t) for t in (query, key, value))
    if mask is not None:
        mask = ops.convert_to_tensor(mask)
    _check(query, key, value, mask)
    rate = validate_rate(dropout_rate, "dropout_rate")
    head_dim, num_keys = int(query.shape[-1]), _length(key)
    scale = attention_output_scale(num_keys, head_dim, mult, is_causal)

    logits = ops.einsum("bthd,bshd->bhts", query * (float(mult) / head_dim), key)
    # Softmax statistics in float32 under 16-bit policies, as Keras' own softmax does.
    logits = ops.cast(logits, "float32")
    if is_causal:
        allowed = causal_mask(ops.shape(query)[1], num_keys, query_offset)[None, None]
        mask = allowed if mask is None else ops.logical_and(_heads_axis(mask), allowed)
    elif mask is not None:
        mask = _heads_axis(mask)
    if mask is not None:
        logits = ops.where(ops.cast(mask, "bool"), logits, -1e9)
    probs = ops.cast(ops.softmax(logits, axis=-1), value.dtype)
    dropped = _dropout(probs, rate, seed=seed) if rate > 0.0 else probs
    out = ops.einsum("bhts,bshd->bthd", dropped, value) * ops.cast(scale, value.dtype)
    if value_bias is not None:
        bias = scale_bwd(value_bias, rsqrt_size(leading_size(out, trailing_dims=2)))
        out = out + ops.cast(bias, out.dtype)
    return (out, probs) if return_scores else out


def _static(dim):
    """A dimension as a Python int, or `None` when only known at run time (a `None` in
    TensorFlow, a symbolic dimension under JAX shape polymorphism)."""
    try:
        return int(dim)
    except Exception:  # TypeError for None; JAX's InconclusiveDimensionOperation
        return None


def _length(key):
    n = _static(key.shape[1])
    return n if n is not None else ops.shape(key)[1]


def _heads_axis(mask):
    return mask[:, None] if len(mask.shape) == 3 else mask


def decoder_residual_taus(num_blocks, residual_mult=1.0, residual_attn_ratio=1.0):
    """u-muP depth rule for blocks with self-attention, cross-attention and an MLP.

    As `transformer_residual_taus`, with each cross-attention layer counted as one more
    attention branch: the `3 * num_blocks` branches add `residual_mult ** 2` times the
    embedding's variance, each attention branch `residual_attn_ratio ** 2` times what an MLP
    branch adds. Returns `[(tau_self, tau_cross, tau_mlp), ...]`.

    Example:
    >>> from keras_unitscale import ops as uops
    >>> [round(t, 4) for t in uops.decoder_residual_taus(1)[0]]
    [0.5774, 0.5, 0.4472]
    """
    if int(num_blocks) < 1:
        raise ValueError(f"`num_blocks` must be a positive integer; received {num_blocks!r}.")
    if residual_mult <= 0 or residual_attn_ratio <= 0:
        raise ValueError(
            "`residual_mult` and `residual_attn_ratio` must be positive; received "
            f"{residual_mult!r} and {residual_attn_ratio!r}."
        )
    mlp = residual_mult**2 / (num_blocks * (2.0 * residual_attn_ratio**2 + 1.0))
    attn = residual_attn_ratio**2 * mlp
    taus = residual_taus([attn, attn, mlp] * int(num_blocks))
    return [tuple(taus[3 * i : 3 * i + 3]) for i in range(int(num_blocks))]
