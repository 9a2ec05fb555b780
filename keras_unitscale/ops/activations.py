"""Scaled nonlinearities.

For `y = f(x)` with `x ~ N(0, 1)`, the forward scale is `1 / std(f(x))` and the gradient scale
`1 / sqrt(E[f'(x)^2])` (the upstream gradient is unit and independent of `x`). Both are
computed once, at import, by numerical integration of the very functions we call, so the
constants cannot drift from the implementation. The input is a non-cut edge: the two scales
are tied by the constraint (default `to_output_scale`).
"""

import math

import keras
import numpy as np
from keras import ops

from keras_unitscale.backend import exact_gelu
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
        exact_gelu,  # Keras' exact GELU, through `erf` on TensorFlow too (cheaper there)
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
"""The activations with scales derived in closed form (from the functions' own formulas)."""

PROBABILITY_ACTIVATIONS = ("softmax", "log_softmax")
"""Not elementwise: applied as they are, unscaled, to a readout's logits (their outputs are
probabilities, or log-probabilities, for a loss that expects them)."""

_KERAS_NAMES = {"gelu": "gelu", "silu": "silu", "swish": "silu", "relu": "relu",
                "tanh": "tanh", "sigmoid": "sigmoid", "linear": "linear",
                "softmax": "softmax", "log_softmax": "log_softmax"}
_MEASURED = {}  # activation key -> (forward scale, grad scale, function)


def canonical_activation(activation):
    """The key `activation` applies for any Keras activation: a name or a function.

    Returns `"linear"`, a name of `SCALES`, one of `PROBABILITY_ACTIVATIONS`, or, for any
    other elementwise activation (`"elu"`, `"softplus"`, `keras.activations.mish`, a custom
    registered function, ...), its Keras serialization, whose scales are measured once (see
    `measured_scales`). Raises a `ValueError` naming the activation otherwise.
    """
    if activation is None:
        return "linear"
    if isinstance(activation, str) and activation in _MEASURED:
        return activation
    if isinstance(activation, str) and (
        activation in _FUNCTIONS or activation in _ALIASES or activation == "linear"
    ):
        return _ALIASES.get(activation, activation)
    try:
        fn = keras.activations.get(activation)
    except (ValueError, TypeError) as e:
        raise ValueError(
            f"`activation` must be a Keras activation (a name such as 'gelu', 'elu' or "
            f"'softmax', or a function); received {activation!r:.80}. {e}"
        ) from None
    name = keras.activations.serialize(fn)
    if isinstance(name, str) and name in _KERAS_NAMES and _is_keras_builtin(fn, name):
        return _KERAS_NAMES[name]
    key = name if isinstance(name, str) else repr(name)
    if key not in _MEASURED:
        _MEASURED[key] = measured_scales(fn, activation) + (fn,)
    return key


def _is_keras_builtin(fn, name):
    return fn is getattr(keras.activations, name, None)


def serialize_activation(key):
    """What `get_config` stores for a key of `canonical_activation`."""
    if key in _MEASURED:
        return keras.activations.serialize(_MEASURED[key][2])
    return key


def measured_scales(fn, name=None):
    """`(forward_scale, grad_scale)` of an elementwise activation, measured as `SCALES` are
    derived: moments of `fn(x)` and of its slope (central differences) for `x ~ N(0, 1)`,
    by a Riemann sum over [-12, 12], evaluated once with `keras.ops` in float32.

    Example:
    >>> import keras
    >>> from keras_unitscale.ops.activations import SCALES, measured_scales
    >>> [round(s, 3) for s in measured_scales(keras.activations.tanh)] == [
    ...     round(s, 3) for s in SCALES["tanh"]]
    True
    """
    name = name if name is not None else getattr(fn, "__name__", fn)
    x = np.linspace(-12.0, 12.0, 24_001)
    h = 1e-2
    try:
        values = [
            np.asarray(ops.convert_to_numpy(fn(ops.convert_to_tensor(v.astype("float32")))),
                       "float64")
            for v in (x, x + h, x - h, x[: x.size // 3])
        ]
    except Exception as e:
        raise ValueError(
            f"`activation` {name!r:.80} could not be evaluated on a float32 vector to measure "
            f"its unit scale: {type(e).__name__}: {e}"
        ) from None
    y, up, down, part = values
    if y.shape != x.shape or not np.allclose(part, y[: x.size // 3], rtol=1e-5, atol=1e-6):
        raise ValueError(
            f"`activation` {name!r:.80} is not elementwise, so no constant scale makes its "
            "output unit; softmax and log_softmax are accepted on a readout "
            "(`Dense(..., readout=True)`), whose logits they turn into probabilities."
        )
    w = _normal_pdf(x) * (x[1] - x[0])
    mean = np.sum(w * y)
    var = np.sum(w * y**2) - mean**2
    grad_sq = np.sum(w * ((up - down) / (2 * h)) ** 2)
    if not (np.isfinite(var) and np.isfinite(grad_sq) and var > 1e-12 and grad_sq > 1e-12):
        raise ValueError(
            f"`activation` {name!r:.80} has no finite, non-zero spread for unit-normal "
            f"inputs (variance {var:.3g}, mean squared slope {grad_sq:.3g}), so it cannot "
            "be unit-scaled."
        )
    return float(var) ** -0.5, float(grad_sq) ** -0.5


def activation(x, name, constraint="to_output_scale"):
    """Applies the scaled nonlinearity of `canonical_activation(name)`: `"linear"`/`None` is
    the identity; softmax and log_softmax (over the last axis) are applied unscaled."""
    name = canonical_activation(name)
    if name == "linear":
        return x
    if name in PROBABILITY_ACTIVATIONS:
        return getattr(ops, name)(x, axis=-1)
    if name in SCALES:
        fn, scales = _FUNCTIONS[name][2], SCALES[name]
    else:
        fwd, bwd, fn = _MEASURED[name]
        scales = (fwd, bwd)
    fwd, bwd = apply_constraint(constraint, *scales)
    return scale_fwd(fn(scale_bwd(x, bwd)), fwd)


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
