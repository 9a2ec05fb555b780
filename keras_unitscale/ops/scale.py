"""The two primitives everything else is built from.

`scale_fwd(x, a)` multiplies by `a` in the forward pass and passes the gradient through;
`scale_bwd(x, b)` is the identity forward and multiplies the gradient by `b`. A unit-scaled op
is `scale_bwd` on each input and weight, the plain op (its own autodiff), then `scale_fwd` on
the output. Scales are Python floats computed from static shapes at trace time; where a size is
only known at run time (a batch dimension left `None` by `tf.function`), the scale is a scalar
tensor instead and is passed into the custom-gradient function as an explicit argument.
"""

import numbers

from keras import ops

from keras_unitscale._validation import finite_number, positive_number  # noqa: F401
from keras_unitscale.backend import custom_gradient


def static_scale(scale):
    """Returns `scale` as a Python float if it is a plain number, else `None`."""
    if isinstance(scale, numbers.Real) and not isinstance(scale, bool):
        return float(scale)
    return None


def _check_finite(scale, name):
    s = static_scale(scale)
    if s is not None:
        finite_number(s, name)
    return s


def scale_fwd(x, scale):
    """Forward `scale * x`; backward passes the gradient unchanged.

    Example:
    >>> import numpy as np
    >>> from keras_unitscale import ops as uops
    >>> float(uops.scale_fwd(np.float32(2.0), 3.0))
    6.0
    """
    s = _check_finite(scale, "scale")
    if s is not None:
        if s == 1.0:
            return x

        def fwd_static(x):
            return x * ops.cast(s, x.dtype), lambda g: (g,)

        return custom_gradient(fwd_static)(x)

    def fwd_dynamic(x, s):
        return x * ops.cast(s, x.dtype), lambda g: (g, ops.zeros_like(s))

    return custom_gradient(fwd_dynamic)(x, ops.cast(scale, "float32"))


def scale_bwd(x, scale):
    """Forward `x` unchanged; backward multiplies the gradient by `scale`.

    Example:
    >>> import numpy as np
    >>> from keras_unitscale import ops as uops
    >>> float(uops.scale_bwd(np.float32(2.0), 3.0))
    2.0
    """
    s = _check_finite(scale, "scale")
    if s is not None:
        if s == 1.0:
            return x

        def bwd_static(x):
            return x, lambda g: (g * ops.cast(s, g.dtype),)

        return custom_gradient(bwd_static)(x)

    def bwd_dynamic(x, s):
        def grad(g):
            return g * ops.cast(s, g.dtype), ops.zeros_like(s)

        return x, grad

    return custom_gradient(bwd_dynamic)(x, ops.cast(scale, "float32"))


def leading_size(x, trailing_dims=1):
    """Number of elements of `x` outside its last `trailing_dims` axes ("batch" in the rules).

    A Python int when the shape is static; otherwise a float32 scalar tensor. The global batch
    is what a weight-gradient scale needs: under `tf.distribute`, each replica sees
    `1 / num_replicas` of it, and the local size is multiplied back up (see docs/distributed.md).
    """
    from keras_unitscale.backend import num_replicas_in_sync

    shape = ops.shape(x)
    lead = shape[: len(shape) - trailing_dims]
    replicas = num_replicas_in_sync()
    if all(isinstance(d, int) for d in lead):
        n = 1
        for d in lead:
            n *= d
        return n * replicas
    n = ops.cast(1.0, "float32")
    for d in lead:
        n = n * ops.cast(d, "float32")
    return n * replicas


def rsqrt_size(n):
    """`n ** -0.5` for a Python number or a scalar tensor."""
    if static_scale(n) is not None:
        return float(n) ** -0.5 if n > 0 else 1.0
    return ops.rsqrt(ops.maximum(ops.cast(n, "float32"), 1.0))
