"""Scaled matrix products: `linear`, `matmul` and the u-muP `readout`.

For `y = x @ w` with `x: [batch, fan_in]`, `w: [fan_in, fan_out]`, unit-normal `x`, `w` and
upstream gradient `g`:
- each output sums `fan_in` unit products: std `sqrt(fan_in)`, so the output scale is
  `fan_in ** -0.5`;
- `dx = g @ w.T` sums `fan_out` products: input-gradient scale `fan_out ** -0.5`;
- `dw = x.T @ g` sums `batch` products: weight-gradient scale `batch ** -0.5` (and the bias
  gradient, a sum of `batch` unit values, the same).
The constraint then ties the output and input-gradient scales together (the input is a
non-cut edge); the weight gradient is left free.

Every function here takes `fp8=None`: an object with `cast_forward(t)` (applied to both
matmul operands) and `cast_gradient(t)` (identity forward; casts the matmul output's
gradient), see `keras_unitscale.ops.formats`. Layers pass their `fp8` attribute through.
A native FP8 setting (`keras_unitscale.ops.fp8_native.FP8Native`) whose `runs_native()` is
true computes the whole product itself instead (`scaled_matmul` / `matmul`: FP8 operands,
float32 accumulation, FP8 products in the backward too).

How it is computed. `linear` and `readout` are one op with a hand-written backward rather
than `scale_bwd` / `scale_fwd` around a differentiated matmul (the two give the same numbers,
see tests/ops/test_linear.py). The weight gradient is a plain 2-D `x.T @ g`: autodiff's
transpose of a batched matmul let XLA on CPU transpose the large output gradient inside a
fusion that recomputes its producers (the activation's backward): an MLP's jitted training
step took 32 ms against 20 ms with this backward, and Keras' `Dense` escapes the problem only
when it has a bias, whose gradient happens to break that fusion (docs/benchmarks.md). Each
scale multiplies the smaller of the two tensors it can go on: `s * (x @ w) = x @ (s * w)`,
and the weight is smaller than the output in training (2,048 rows against 128 or 512
columns) but not when decoding one token per row. In FP8 simulation the operands are cast before they are scaled, so the formats
still see unit values.
"""

from keras import ops

from keras_unitscale.backend import custom_gradient
from keras_unitscale.ops.constraints import apply_constraint
from keras_unitscale.ops.scale import (
    leading_size,
    positive_number,
    rsqrt_size,
    scale_bwd,
    scale_fwd,
    static_scale,
)


def _fans(x, w, name):
    if len(w.shape) != 2:
        raise ValueError(f"`{name}` weight must be 2-D [fan_in, fan_out]; got shape {w.shape}.")
    fan_in, fan_out = int(w.shape[0]), int(w.shape[1])
    if x.shape[-1] is not None and int(x.shape[-1]) != fan_in:
        raise ValueError(
            f"`{name}` expects inputs whose last dimension is {fan_in}; got shape {x.shape}."
        )
    return fan_in, fan_out


def _native(fp8):
    runs_native = getattr(fp8, "runs_native", None)
    return runs_native is not None and runs_native()


def _product(a, b, fp8):
    if fp8 is None:
        return ops.matmul(a, b)
    if _native(fp8):
        return fp8.matmul(a, b)
    return fp8.cast_gradient(ops.matmul(fp8.cast_forward(a), fp8.cast_forward(b)))


def _scaled_product(x, w, out_scale, grad_in_scale, grad_w_scale, fp8):
    """`out_scale * (x @ w)` whose backward gives `x` the gradient `grad_in_scale * g @ w.T`
    and `w` the gradient `grad_w_scale * x.T @ g` (see the module docstring)."""
    if fp8 is not None and _native(fp8):
        return fp8.scaled_matmul(x, w, out_scale, grad_in_scale, grad_w_scale)
    if fp8 is not None:
        x, w = fp8.cast_forward(x), fp8.cast_forward(w)
    y = _scaled_matmul(x, w, out_scale, grad_in_scale, grad_w_scale)
    return y if fp8 is None else fp8.cast_gradient(y)


def _scaled_matmul(x, w, out_scale, grad_in_scale, grad_w_scale):
    """One op with its own backward: a 2-D weight gradient, each scale on the smaller tensor
    (the module docstring says why)."""
    dynamic = static_scale(grad_w_scale) is None
    rows = _static_rows(x)
    fan_in, fan_out = int(w.shape[0]), int(w.shape[1])
    # Scale the weight unless the rows are statically known to be fewer than its other side.
    out_on_weight = rows is None or rows >= fan_in
    grad_on_weight = rows is None or rows >= fan_out

    def forward(x, w, *maybe_scale):
        w_grad_scale = maybe_scale[0] if dynamic else grad_w_scale
        if out_on_weight:
            y = ops.matmul(x, w * ops.cast(out_scale, w.dtype))
        else:
            y = ops.matmul(x, w) * ops.cast(out_scale, x.dtype)

        def grad(g):
            if grad_on_weight:
                dx = ops.matmul(g, ops.transpose(w * ops.cast(grad_in_scale, w.dtype)))
            else:
                dx = ops.matmul(g, ops.transpose(w)) * ops.cast(grad_in_scale, g.dtype)
            x2 = ops.reshape(x, (-1, ops.shape(x)[-1]))
            g2 = ops.reshape(g, (-1, ops.shape(g)[-1]))
            dw = ops.matmul(ops.transpose(x2), g2) * ops.cast(w_grad_scale, g.dtype)
            return (dx, dw) + ((ops.zeros_like(maybe_scale[0]),) if dynamic else ())

        return y, grad

    args = (x, w) + ((ops.cast(grad_w_scale, "float32"),) if dynamic else ())
    return custom_gradient(forward)(*args)


def _static_rows(x):
    """The number of rows `x` contributes to a matmul, or `None` if not known statically."""
    n = 1
    for d in x.shape[:-1]:
        if not isinstance(d, int):
            return None
        n *= d
    return n


def _add_bias(y, b, batch):
    if b is None:
        return y
    # The bias lives in output units, so it is added after the output scale.
    return y + scale_bwd(b, rsqrt_size(batch))


def linear(x, w, b=None, constraint="to_output_scale", fp8=None):
    """Unit-scaled `x @ w + b` over the last axis of `x`.

    Args:
        x: inputs `[..., fan_in]`.
        w: weight `[fan_in, fan_out]`, initialised N(0, 1).
        b: optional bias `[fan_out]`, initialised to zeros.
        constraint: how the output and input-gradient scales are tied (see `constraints`).
        fp8: optional FP8 simulation (see the module docstring).

    Example:
    >>> import numpy as np
    >>> from keras_unitscale import ops as uops
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((256, 512)).astype("float32")
    >>> w = rng.standard_normal((512, 128)).astype("float32")
    >>> y = np.asarray(uops.linear(x, w))
    >>> bool(abs(y.std() - 1) < 0.1)
    True
    """
    fan_in, fan_out = _fans(x, w, "linear")
    out_scale, grad_in_scale = apply_constraint(constraint, fan_in**-0.5, fan_out**-0.5)
    batch = leading_size(x)
    y = _scaled_product(x, w, out_scale, grad_in_scale, rsqrt_size(batch), fp8)
    return _add_bias(y, b, batch)


def readout(x, w, b=None, fp8=None, mult=1.0):
    """The last linear layer before the loss, u-muP style (unconstrained).

    The output is scaled by `1 / fan_in` rather than `fan_in ** -0.5`, so logits start small
    (std `fan_in ** -0.5`); the input gradient is scaled to unit by `fan_out ** -0.5`.
    `mult` (u-muP's output multiplier) multiplies the output, bias included, in the forward
    pass only, as `scale_fwd(readout(x, w, b), mult)` would, without a pass over the logits.

    Example:
    >>> import numpy as np
    >>> from keras_unitscale import ops as uops
    >>> x = np.ones((4, 16), "float32"); w = np.ones((16, 3), "float32")
    >>> np.asarray(uops.readout(x, w))[0].tolist()
    [1.0, 1.0, 1.0]
    """
    fan_in, fan_out = _fans(x, w, "readout")
    mult = positive_number(mult, "mult")
    batch = leading_size(x)
    y = _scaled_product(x, w, mult / fan_in, fan_out**-0.5, rsqrt_size(batch), fp8)
    # The multiplier scales the bias forward only, as it does the matmul.
    return _add_bias(y, None if b is None else scale_fwd(b, mult), batch)


def matmul(a, b, constraint="to_output_scale", fp8=None):
    """Unit-scaled `a @ b` for `a: [..., m, k]`, `b: [..., k, n]` (both activations).

    Output scale `k ** -0.5`; `a`'s gradient `n ** -0.5`; `b`'s gradient `m ** -0.5`. Both
    inputs are non-cut edges, so the constraint ties all three.

    Example:
    >>> import numpy as np
    >>> from keras_unitscale import ops as uops
    >>> tuple(uops.matmul(np.ones((2, 3, 4), "float32"), np.ones((2, 4, 5), "float32")).shape)
    (2, 3, 5)
    """
    if len(a.shape) < 2 or len(b.shape) < 2:
        raise ValueError(
            f"`matmul` expects inputs of rank >= 2; got shapes {a.shape} and {b.shape}."
        )
    m, k, n = a.shape[-2], a.shape[-1], b.shape[-1]
    if None in (m, k, n):
        raise ValueError(
            "`matmul` needs static sizes for the contracted and output axes; got shapes "
            f"{a.shape} and {b.shape}."
        )
    out_scale, a_scale, b_scale = apply_constraint(
        constraint, float(k) ** -0.5, float(n) ** -0.5, float(m) ** -0.5
    )
    a = scale_bwd(a, a_scale)
    b = scale_bwd(b, b_scale)
    return scale_fwd(_product(a, b, fp8), out_scale)
