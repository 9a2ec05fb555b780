"""Unit-scaled scaled-dot-product attention.

Layout: `query [batch, T, heads, d_head]`, `key [batch, S, heads, d_head]`,
`value [batch, S, heads, d_value]` (as `keras.ops.dot_product_attention`).

Logits. u-muP scales the logits by `mult / d_head`, not `1 / sqrt(d_head)`. For unit `q` and
`k`, `q . k` has std `sqrt(d_head)`, so at initialisation the logits have std
`sigma = mult / sqrt(d_head)` (0.125 for `d_head = 64`): attention starts nearly uniform.
Once training aligns `q` with `k`, `q . k` grows like `d_head` and the logits like `mult`,
independent of width, which is the point of the `1 / d_head` rule.

Output scale, per query. The output `o_i = sum_j p_ij v_j` of unit, independent values has
variance `sum_j p_ij ** 2`. For a query that attends to `n` keys (the keys its mask allows:
not padding, not after it under a causal mask) with logits of std `sigma`,
`p_j ~ e^{x_j} / (n E[e^x])`, so `sum_j p_j ** 2 ~ n E[e^{2x}] / (n E[e^x]) ** 2 =
e^{sigma ** 2} / n`, at most 1 (one-hot). Uniform attention gives `v0 = 1 / n`.
As attention sharpens the variance rises from `v0` to 1. The lognormal estimate
`e^{sigma^2} v0` is right for `sigma` below about 1 but overshoots badly once a few keys
dominate the softmax (for `n = 128` it predicts 0.30 at `sigma = 2`; simulation gives 0.11).
We therefore interpolate in log space, `var = v0 ** (1 - alpha)` with
`alpha = sigma^2 / (sigma^2 + 4)`, the empirical model of Graphcore's `unit-scaling`:
exact as `sigma -> 0`, 1 as `sigma -> inf`, halfway (geometrically) at `sigma = 2`. That is
where the lognormal estimate fails: `sum_j p_j^2 = sum_j e^{2 x_j} / (sum_j e^{x_j})^2`, and
the numerator is carried by its few largest terms once `2 sigma > sqrt(2 ln n)` (`sigma >
1.6` for `n = 128`). Against simulated softmaxes (`n` in 16..1024, `sigma` in 0.125..6) the
model stays within 22% in std; at initialisation, within 1%. The scale of query `i` is
`var_i ** -0.5 = n_i ** (0.5 * (1 - alpha))`: 11.21 for `n = 128`, `d_head = 64`, `mult = 1`
(uniform attention would give `sqrt(128)` = 11.31).

Why `n_i`, counted from the mask, and not the key tensor's length `S`. Masking must make
padding irrelevant: the same real tokens must give the same outputs whatever padding follows
them, and `generate` must not depend on `max_length`. A scale computed from `S` (the padded
length, or a decoding cache's `max_length`) changes every output when the padding changes. The
number of keys a query really attends to does not: padding keys are masked, so they are not
counted. The same count makes each causal row unit on its own (row `t` sees `t + 1` keys),
where one scale for all rows, `sqrt(S / H_S)`, left the first row at std 4.8 and the last at
0.43 (`S = 128`). A query that attends to no key at all (a padded query row) is given `n = 1`.
A cache of length `S` reproduces a full causal pass exactly, since row `t` counts the same
keys in both.

Backward. The scale is a per-query multiply of the output that depends on the mask alone, so
the gradients of `q`, `k` and `v` get the same factor, as a constraint demands (all three are
non-cut edges). `dv_j = sum_i s_i p_ij g_i` over the rows that see key `j`. Without a causal
mask, `p_ij ~ 1/S` and `s_i ~ sqrt(S)`, so its variance is `T / S`: unit for self-attention,
smaller when few queries attend to many keys (cross-attention from a short target; one scale
cannot serve both, the output wins). With a causal mask, row `i >= j` contributes
`(i + 1) / (i + 1) ** 2`, so `var(dv_j) = sum_{i >= j} 1 / (i + 1) = H_S - H_j`, whose mean
over the `S` keys is exactly 1 (each `1 / (i + 1)` is counted `i + 1` times): the value
gradient is unit on average, large for the first keys (seen by every row), small for the last.
`dq_i = mult / d_head * s_i * sum_j p_ij (g_i . v_j - <g_i . v>) k_j` has std about
`mult / sqrt(d_head) = sigma` (0.125 for `d_head = 64`): query and key gradients start
small, as in Graphcore's library (often quoted as `~ S^-1/2`: 0.088 at `S = 128`).

Dropout on the probabilities uses `keras_unitscale.ops.dropout`'s rule, `mask * p /
sqrt(1 - rate)`, which leaves `E[sum_j (m_j p_j) ** 2 / (1 - rate)] = sum_j p_j ** 2`
unchanged: no correction to the scale is needed.

Two implementations compute the same function. The fused one hands the logit scale to
`keras.ops.dot_product_attention` as its `scale` and multiplies by the output scale after it:
on an NVIDIA GPU under JAX, 16-bit inputs with no mask, or a padding mask that keeps a prefix
of the keys (what the preprocessors make), run cuDNN's flash attention, which never
materialises the `[batch, heads, T, S]` probabilities (other masks run XLA's attention). The
einsum one materialises the probabilities. By default the fused path runs where cuDNN's
kernel serves; the einsum path everywhere else: where the kernel cannot serve (dropout on the
probabilities, `return_scores`, float32 inputs, head sizes over 128), on TensorFlow, and on
CPUs, where XLA's attention has no kernel of its own and ran a training step's attention 2x
slower than the einsum (JAX, float32, batch 32, 64 tokens, 4 heads of 32).
"""


from keras import ops

from keras_unitscale.backend import cudnn_attention_available, fused_attention
from keras_unitscale.ops.dropout import dropout as _dropout
from keras_unitscale.ops.dropout import validate_rate
from keras_unitscale.ops.residual import decoder_residual_taus  # noqa: F401  (its old home)
from keras_unitscale.ops.scale import leading_size, rsqrt_size, scale_bwd, static_scale

_SHARPENING = 4.0  # sigma^2 at which the variance is halfway (in log space) from v0 to 1
_IMPLEMENTATIONS = (None, "fused", "einsum")


def attention_output_scale(num_keys, head_dim, mult=1.0):
    """The forward (and q, k, v gradient) scale of a query that attends to `num_keys` keys.

    `num_keys` is a Python number or a tensor of per-query counts (then the result is a
    tensor of the same shape; counts below 1 count as 1). See the module docstring.

    Example:
    >>> from keras_unitscale import ops as uops
    >>> round(uops.attention_output_scale(128, 64), 2)
    11.21
    >>> round(uops.attention_output_scale(1, 64), 2)
    1.0
    """
    head_dim = int(head_dim)
    if head_dim <= 0:
        raise ValueError(f"`head_dim` must be positive; received {head_dim}.")
    exponent = _exponent(head_dim, mult)
    if static_scale(num_keys) is not None:
        n = float(num_keys)
        if not n > 0:
            raise ValueError(f"`num_keys` must be positive; received {num_keys}.")
        return n**exponent
    n = ops.maximum(ops.cast(num_keys, "float32"), 1.0)
    return ops.power(n, exponent)


def _exponent(head_dim, mult):
    sigma_sq = float(mult) ** 2 / head_dim
    # scale = var ** -0.5 = (1 / v0) ** (0.5 * (1 - alpha))
    return 0.5 * (1.0 - sigma_sq / (sigma_sq + _SHARPENING))


def causal_mask(query_length, key_length, query_offset=0):
    """Boolean `[query_length, key_length]`: query `i` (at position `i + query_offset`) sees
    keys `j <= i + query_offset`. `query_offset` may be a scalar tensor (a cache index)."""
    i = ops.arange(query_length, dtype="int32")[:, None] + ops.cast(query_offset, "int32")
    j = ops.arange(key_length, dtype="int32")[None, :]
    return ops.greater_equal(i, j)


def attended_keys(mask, is_causal, query_length, key_length, query_offset=0):
    """How many keys each query attends to: a Python int when that is the same static number
    for every query (no mask, not causal), else float32 `[batch or 1, T, heads or 1, 1]`.

    `mask` is `None` or boolean `[batch or 1, heads or 1, T or 1, S]`."""
    if mask is None and not is_causal:
        return key_length
    if mask is None:
        t = ops.arange(query_length, dtype="float32") + ops.cast(query_offset, "float32") + 1.0
        counts = ops.minimum(t, ops.cast(key_length, "float32"))
        return ops.reshape(counts, (1, -1, 1, 1))
    if tuple(mask.shape[1:3]) == (1, 1):
        # A key padding mask: a running count over the keys, not a [batch, T, S] reduction.
        keep = ops.cast(mask[:, 0, 0, :], "float32")  # [B, S]
        if not is_causal:
            return ops.reshape(ops.sum(keep, axis=-1), (-1, 1, 1, 1))
        last = ops.arange(query_length, dtype="int32") + ops.cast(query_offset, "int32")
        last = ops.clip(last, 0, ops.cast(key_length, "int32") - 1)
        counts = ops.take(ops.cumsum(keep, axis=-1), last, axis=1)  # [B, T]
        return ops.expand_dims(ops.expand_dims(counts, -1), -1)
    if is_causal:
        mask = ops.logical_and(mask, causal_mask(query_length, key_length, query_offset))
    counts = ops.sum(ops.cast(mask, "float32"), axis=-1)  # [B, H, T]
    return ops.expand_dims(ops.transpose(counts, (0, 2, 1)), -1)


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
    implementation=None,
):
    """Unit-scaled attention `scale_i * softmax(mult / d_head * q k^T) v`.

    `scale_i` depends on the number of keys query `i` attends to (module docstring), so
    padding after the real tokens never changes the result.

    Args:
        query: `[batch, T, heads, d_head]`.
        key: `[batch, S, heads, d_head]`.
        value: `[batch, S, heads, d_value]`.
        mask: optional boolean, `True` where attention is allowed; `[batch, T, S]` (also
            broadcastable: `[1, T, S]`, `[batch, 1, S]`) or `[batch, heads, T, S]`.
        is_causal: also mask keys after each query's position.
        query_offset: position of the first query among the keys (a cache index when
            decoding one token at a time); an int or scalar tensor.
        mult: u-muP attention multiplier (softmax temperature is `d_head / mult`).
        dropout_rate: dropout on the probabilities (pass 0 at inference).
        seed: seed or `keras.random.SeedGenerator` for the dropout.
        return_scores: also return the probabilities `[batch, heads, T, S]` (before dropout).
        value_bias: optional `[heads, d_value]` bias of the value projection. The
            probabilities sum to one, so adding it to every value equals adding it to the
            output; it is added after the output scale (which would otherwise multiply a
            constant by `sqrt(n)`), and its gradient, a sum over `batch * T` outputs, is
            scaled by `(batch * T) ** -0.5`.
        implementation: `"fused"` (`keras.ops.dot_product_attention`: cuDNN flash attention
            on NVIDIA GPUs under JAX, XLA's attention elsewhere), `"einsum"` (materialised
            probabilities), or `None`: fused where cuDNN's kernel serves these inputs and
            neither dropout nor scores are asked for, einsum otherwise. Both compute the same
            function.

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
    if implementation not in _IMPLEMENTATIONS:
        raise ValueError(
            f"`implementation` must be one of {_IMPLEMENTATIONS}; received {implementation!r}."
        )
    if implementation == "fused" and (rate > 0.0 or return_scores):
        raise ValueError(
            "`implementation='fused'` cannot apply dropout to the probabilities or return "
            f"them; received dropout_rate={dropout_rate!r}, return_scores={return_scores!r}."
        )
    if implementation is None:
        fused = cudnn_attention_available(query, key) and rate == 0.0 and not return_scores
        implementation = "fused" if fused else "einsum"
    head_dim, num_keys = int(query.shape[-1]), _length(key)
    num_queries = _length(query)
    if mask is not None:
        mask = ops.cast(mask[:, None] if len(mask.shape) == 3 else mask, "bool")
    counts = attended_keys(mask, is_causal, num_queries, num_keys, query_offset)
    scale = attention_output_scale(counts, head_dim, mult)
    logit_scale = float(mult) / head_dim

    probs = None
    if implementation == "fused":
        # The kernel's own causal mask is aligned at the first key; with an offset (decoding
        # from a cache) or fewer queries than keys it goes into the mask instead.
        aligned = is_causal and static_scale(query_offset) == 0 and _same(num_queries, num_keys)
        if is_causal and not aligned:
            allowed = causal_mask(num_queries, num_keys, query_offset)[None, None]
            mask = allowed if mask is None else ops.logical_and(mask, allowed)
        out = fused_attention(query, key, value, mask, logit_scale, aligned)
    else:
        logits = ops.einsum("bthd,bshd->bhts", query * logit_scale, key)
        # Softmax statistics in float32 under 16-bit policies, as Keras' own softmax does.
        logits = ops.cast(logits, "float32")
        if is_causal:
            allowed = causal_mask(num_queries, num_keys, query_offset)[None, None]
            mask = allowed if mask is None else ops.logical_and(mask, allowed)
        if mask is not None:
            logits = ops.where(mask, logits, -1e9)
        probs = ops.cast(ops.softmax(logits, axis=-1), value.dtype)
        dropped = _dropout(probs, rate, seed=seed) if rate > 0.0 else probs
        out = ops.einsum("bhts,bshd->bthd", dropped, value)
    out = out * ops.cast(scale, out.dtype)
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


def _length(t):
    n = _static(t.shape[1])
    return n if n is not None else ops.shape(t)[1]


def _same(a, b):
    return isinstance(a, int) and isinstance(b, int) and a == b

