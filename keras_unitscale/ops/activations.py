"""Scaled nonlinearities.

For `y = f(x)` with `x ~ N(0, 1)`, the forward scale is `1 / std(f(x))` and the gradient scale
`1 / sqrt(E[f'(x)^2])` (the upstream gradient is unit and independent of `x`). Both are
computed once, at import, by numerical integration of the very functions we call, so the
constants cannot drift from the implementation. The input is a non-cut edge: the two scales
are tied by the constraint (default `to_output_scale`).
"""

import math

import numpy as np
from keras import ops

from keras_unitscale.ops.constraints import apply_constraint
from keras_unitscale.ops.scale import scale_bwd, scale_fwd


_erf = np.frompyfunc(math.erf, 1, 1)


def _normal_cdf(x):
    x = np.asarray(x, dtype='float64')
    return 0.5 * (1.0 + _erf(x / math.sqrt(2.0)).astype("float64"))


def _normal_pdf(x):
    return np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


# name: (numpy f, numpy f', keras op)
_FUNCTIONS = {
    "gelu": (
        lambda x: x * _normal_cdf(x),
        lambda x: _normal_cdf(x) + x * _normal_pdf(x),
        lambda x: ops.gelu(x, approximate=False),
    ),
    "silu": (
        lambda x: x * _sigmoid(x),
        lambda x: _sigmoid(x) * (1.0 + x * (1.0 - _sigmoid(x))),
        ops.silu,
    ),
    "relu": (lambda x: np.maximum(x, 0.0), lambda x: (x > 0).astype("float64"), ops.relu),
    "tanh": (np.tanh, lambda x: 1.0 - np.tanh(x) ** 2, ops.tanh),
    "sigmoid": (_sigmoid, lambda x: _sigmoid(x) * (1.0 - _sigmoid(x)), ops.sigmoid),
}
_ALIASES = {"swish": "silu"}


def _gaussian_moments(fn, dfn):
    # E[g(x)] for x ~ N(0, 1) on a fine grid over [-12, 12] (the tails beyond carry < 1e-30).
    # A plain Riemann sum handles ReLU's kink, where Gauss-Hermite converges slowly.
    x = np.linspace(-12.0, 12.0, 240_001)
    w = _normal_pdf(x) * (x[1] - x[0])
    mean = np.sum(w * fn(x))
    var = np.sum(w * fn(x) ** 2) - mean**2
    grad_sq = np.sum(w * dfn(x) ** 2)
    fwd = float(var) ** -0.5
    return fwd, float(grad_sq) ** -0.5, float(mean) * fwd


_MOMENTS = {name: _gaussian_moments(f, df) for name, (f, df, _) in _FUNCTIONS.items()}
SCALES = {name: m[:2] for name, m in _MOMENTS.items()}
"""`{name: (forward_scale, grad_scale)}` for unit-normal inputs."""
MEANS = {name: m[2] for name, m in _MOMENTS.items()}
"""`{name: mean}` of the scaled output. Scaling makes the std one, not the mean zero, so a
matmul that follows sees a second moment of `1 + mean^2` (e.g. about 1.23 after GELU)."""

ACTIVATIONS = tuple(_FUNCTIONS) + tuple(_ALIASES) + ("linear",)


def canonical_activation(name):
    """Maps an activation name (or `None`) to the name used in `SCALES`, or raises."""
    if name is None or name == "linear":
        return "linear"
    if isinstance(name, str):
        name = _ALIASES.get(name, name)
        if name in _FUNCTIONS:
            return name
    raise ValueError(
        f"`activation` must be one of {list(ACTIVATIONS)} or None; received {name!r}."
    )


def activation(x, name, constraint="to_output_scale"):
    """Applies the named scaled nonlinearity (`"linear"`/`None` is the identity)."""
    name = canonical_activation(name)
    if name == "linear":
        return x
    fwd, bwd = apply_constraint(constraint, *SCALES[name])
    return scale_fwd(_FUNCTIONS[name][2](scale_bwd(x, bwd)), fwd)


def gelu(x, constraint="to_output_scale"):
    """Unit-scaled GELU (exact, erf form).

    Example:
    >>> import numpy as np
    >>> from keras_unitscale import ops as uops
    >>> x = np.random.default_rng(0).standard_normal(100_000).astype("float32")
    >>> bool(abs(np.asarray(uops.gelu(x)).std() - 1) < 0.02)
    True
    """
    return activation(x, "gelu", constraint)


def silu(x, constraint="to_output_scale"):
    """Unit-scaled SiLU (swish)."""
    return activation(x, "silu", constraint)


def relu(x, constraint="to_output_scale"):
    """Unit-scaled ReLU."""
    return activation(x, "relu", constraint)


def tanh(x, constraint="to_output_scale"):
    """Unit-scaled tanh."""
    return activation(x, "tanh", constraint)


def sigmoid(x, constraint="to_output_scale"):
    """Unit-scaled sigmoid."""
    return activation(x, "sigmoid", constraint)
