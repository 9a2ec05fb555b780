"""Unit-scaled `LayerNormalization` and `RMSNormalization`."""

import keras

from keras_unitscale import ops as uops


class _Normalization(keras.layers.Layer):
    def __init__(self, epsilon, center, scale, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(epsilon, (int, float)) or epsilon <= 0:
            raise ValueError(f"`epsilon` must be a positive float; received {epsilon!r}.")
        self.epsilon = float(epsilon)
        self.center = bool(center)
        self.scale = bool(scale)
        self.supports_masking = True

    def build(self, input_shape):
        dim = input_shape[-1]
        if dim is None:
            raise ValueError(
                f"The last dimension of `inputs` must be known; received shape {input_shape}."
            )
        self.gamma = self.add_weight(name="gamma", shape=(dim,), initializer="ones") if (
            self.scale
        ) else None
        self.beta = self.add_weight(name="beta", shape=(dim,), initializer="zeros") if (
            self.center
        ) else None

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(epsilon=self.epsilon, center=self.center, scale=self.scale)
        return config


@keras.saving.register_keras_serializable(package="keras_unitscale")
class LayerNormalization(_Normalization):
    """Layer normalisation over the last axis, with unit-scaled gain and bias gradients.

    The output is unit by construction; the optional gain (`scale=True`) and bias
    (`center=True`) get gradients scaled by `batch ** -0.5`. Keras' defaults (both on) are
    kept; unit scaling's convention of no learnt gain is `scale=False, center=False`.

    Args:
        epsilon: added to the variance.
        center: learn a bias.
        scale: learn a gain.

    Example:
    >>> import numpy as np
    >>> import keras_unitscale as ku
    >>> y = ku.layers.LayerNormalization()(np.array([[1.0, 2.0, 3.0]], "float32"))
    >>> print(np.round(np.asarray(y), 3))
    [[-1.224  0.     1.224]]
    """

    def __init__(self, epsilon=1e-3, center=True, scale=True, **kwargs):
        super().__init__(epsilon, center, scale, **kwargs)

    def call(self, inputs):
        return uops.layer_norm(inputs, self.gamma, self.beta, self.epsilon)


@keras.saving.register_keras_serializable(package="keras_unitscale")
class RMSNormalization(_Normalization):
    """RMS normalisation over the last axis, with a unit-scaled gain gradient.

    Args:
        epsilon: added to the mean square.
        scale: learn a gain (default true, as `keras.layers.RMSNormalization`).

    Example:
    >>> import numpy as np
    >>> import keras_unitscale as ku
    >>> y = ku.layers.RMSNormalization()(np.array([[3.0, 4.0]], "float32"))
    >>> print(np.round(np.asarray(y) ** 2, 3))
    [[0.72 1.28]]
    """

    def __init__(self, epsilon=1e-6, scale=True, **kwargs):
        super().__init__(epsilon, False, scale, **kwargs)

    def call(self, inputs):
        return uops.rms_norm(inputs, self.gamma, self.epsilon)

    def get_config(self):
        config = super().get_config()
        del config["center"]
        return config
