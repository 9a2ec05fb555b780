"""Unit-scaled `LayerNormalization` and `RMSNormalization`."""

import math

import keras

from keras_unitscale import ops as uops
from keras_unitscale.layers import _weights


class _Normalization(keras.layers.Layer):
    def __init__(self, epsilon, center, scale, axis=-1, beta_initializer="zeros",
                 gamma_initializer="ones", beta_regularizer=None, gamma_regularizer=None,
                 beta_constraint=None, gamma_constraint=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or not (
            math.isfinite(epsilon) and epsilon > 0
        ):
            raise ValueError(f"`epsilon` must be a positive float; received {epsilon!r}.")
        if isinstance(axis, (list, tuple)) and len(axis) == 1:
            axis = axis[0]
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise ValueError(
                f"`axis` must be the last axis (-1): unit-scaled normalisation normalises over "
                f"the features only; received axis={axis!r}."
            )
        self.axis = axis
        self.epsilon = float(epsilon)
        self.center = bool(center)
        self.scale = bool(scale)
        self.beta_initializer = keras.initializers.get(beta_initializer)
        self.gamma_initializer = keras.initializers.get(gamma_initializer)
        self.beta_regularizer = _weights.regularizer(beta_regularizer, "beta_regularizer")
        self.gamma_regularizer = _weights.regularizer(gamma_regularizer, "gamma_regularizer")
        self.beta_constraint = _weights.constraint(beta_constraint, "beta_constraint")
        self.gamma_constraint = _weights.constraint(gamma_constraint, "gamma_constraint")
        self.supports_masking = True

    def build(self, input_shape):
        dim = input_shape[-1]
        if dim is None:
            raise ValueError(
                f"The last dimension of `inputs` must be known; received shape {input_shape}."
            )
        if self.axis not in (-1, len(input_shape) - 1):
            raise ValueError(
                f"`axis` must be the last axis (-1 or {len(input_shape) - 1} for inputs of "
                f"rank {len(input_shape)}): unit-scaled normalisation normalises over the "
                f"features only; received axis={self.axis}."
            )
        self.gamma = _weights.declare(self.add_weight(
            name="gamma", shape=(dim,), initializer=self.gamma_initializer,
            regularizer=self.gamma_regularizer, constraint=self.gamma_constraint,
        ), "norm") if self.scale else None
        self.beta = _weights.declare(self.add_weight(
            name="beta", shape=(dim,), initializer=self.beta_initializer,
            regularizer=self.beta_regularizer, constraint=self.beta_constraint,
        ), "bias") if self.center else None

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(axis=self.axis, epsilon=self.epsilon, center=self.center,
                      scale=self.scale)
        return _weights.serialize(
            config, beta_initializer=self.beta_initializer,
            gamma_initializer=self.gamma_initializer, beta_regularizer=self.beta_regularizer,
            gamma_regularizer=self.gamma_regularizer, beta_constraint=self.beta_constraint,
            gamma_constraint=self.gamma_constraint,
        )


@keras.saving.register_keras_serializable(package="keras_unitscale")
class LayerNormalization(_Normalization):
    """Layer normalisation over the last axis, with unit-scaled gain and bias gradients.

    The output is unit by construction; the optional gain (`scale=True`) and bias
    (`center=True`) get gradients scaled by `batch ** -0.5`. Keras' defaults (both on) are
    kept; unit scaling's convention of no learnt gain is `scale=False, center=False`.

    Args:
        axis: the last axis only (`-1`, Keras' default); others are refused.
        epsilon: added to the variance.
        center: learn a bias.
        scale: learn a gain.
        rms_scaling: as in Keras, normalise by the root mean square without centring
            (`RMSNormalization`); then `center` is ignored.
        beta_initializer, gamma_initializer, beta_regularizer, gamma_regularizer,
            beta_constraint, gamma_constraint: as in Keras.

    Example:
    >>> import numpy as np
    >>> import keras_unitscale as ku
    >>> y = ku.layers.LayerNormalization()(np.array([[1.0, 2.0, 3.0]], "float32"))
    >>> print(np.round(np.asarray(y), 3))
    [[-1.224  0.     1.224]]
    """

    def __init__(self, axis=-1, epsilon=1e-3, center=True, scale=True, rms_scaling=False,
                 **kwargs):
        self.rms_scaling = bool(rms_scaling)
        super().__init__(epsilon, center and not self.rms_scaling, scale, axis=axis, **kwargs)

    def call(self, inputs):
        if self.rms_scaling:
            return uops.rms_norm(inputs, self.gamma, self.epsilon)
        return uops.layer_norm(inputs, self.gamma, self.beta, self.epsilon)

    def get_config(self):
        config = super().get_config()
        config.update(rms_scaling=self.rms_scaling)
        return config


@keras.saving.register_keras_serializable(package="keras_unitscale")
class RMSNormalization(_Normalization):
    """RMS normalisation over the last axis, with a unit-scaled gain gradient.

    Args:
        axis: the last axis only (`-1`).
        epsilon: added to the mean square.
        scale: learn a gain (default true, as `keras.layers.RMSNormalization`).

    Example:
    >>> import numpy as np
    >>> import keras_unitscale as ku
    >>> y = ku.layers.RMSNormalization()(np.array([[3.0, 4.0]], "float32"))
    >>> print(np.round(np.asarray(y) ** 2, 3))
    [[0.72 1.28]]
    """

    def __init__(self, axis=-1, epsilon=1e-6, scale=True, **kwargs):
        for key in ("center", "beta_initializer", "beta_regularizer", "beta_constraint"):
            kwargs.pop(key, None)  # written by the shared get_config; no bias here
        super().__init__(epsilon, False, scale, axis=axis, **kwargs)

    def call(self, inputs):
        return uops.rms_norm(inputs, self.gamma, self.epsilon)

    def get_config(self):
        config = super().get_config()
        for key in ("center", "beta_initializer", "beta_regularizer", "beta_constraint"):
            del config[key]
        return config


NORMALIZATIONS = ("layer_norm", "rms_norm")
"""The names of the parameter-free norms the transformer blocks and backbones take."""


def check_normalization(normalization):
    """Returns `normalization` if it names one of `NORMALIZATIONS`, else raises ValueError."""
    if normalization not in NORMALIZATIONS:
        raise ValueError(
            f"`normalization` must be one of {list(NORMALIZATIONS)}; received "
            f"{normalization!r}."
        )
    return normalization


def parameter_free_norm(normalization, epsilon=1e-5, dtype=None, name=None):
    """A norm without learnt gain or bias, as every pre-norm of a transformer block and the
    final norm of a transformer backbone are: `LayerNormalization(center=False, scale=False)`
    for `"layer_norm"`, `RMSNormalization(scale=False)` for `"rms_norm"`.

    Example:
    >>> from keras_unitscale.layers.normalization import parameter_free_norm
    >>> norm = parameter_free_norm("rms_norm", name="output_norm")
    >>> type(norm).__name__, norm.scale
    ('RMSNormalization', False)
    """
    if check_normalization(normalization) == "rms_norm":
        return RMSNormalization(epsilon=epsilon, scale=False, dtype=dtype, name=name)
    return LayerNormalization(epsilon=epsilon, center=False, scale=False, dtype=dtype, name=name)
