"""Scaled dropout.

Plain inverted dropout multiplies kept values by `1 / (1 - p)`, which keeps the mean but
raises the std of a unit tensor to `(1 - p) ** -0.5`. Folding in `sqrt(1 - p)` (forward and,
since it is a plain multiply, backward) gives `mask * x / sqrt(1 - p)`: unit std both ways.
"""

import keras

from keras_unitscale._validation import probability


def validate_rate(rate, name="rate"):
    """`rate` as a float in `[0, 1)`, else a `ValueError` naming `name`."""
    return probability(rate, name)


def dropout(x, rate, noise_shape=None, seed=None):
    """Drops entries with probability `rate` and scales the rest by `(1 - rate) ** -0.5`.

    Example:
    >>> import numpy as np
    >>> from keras_unitscale import ops as uops
    >>> x = np.random.default_rng(0).standard_normal(200_000).astype("float32")
    >>> y = np.asarray(uops.dropout(x, 0.5, seed=1))
    >>> bool(abs(y.std() - 1) < 0.02)
    True
    """
    rate = validate_rate(rate)
    if rate == 0.0:
        return x
    y = keras.random.dropout(x, rate, noise_shape=noise_shape, seed=seed)
    return y * (1.0 - rate) ** 0.5
