"""Unit-scaled `Activation`."""

import keras

from keras_unitscale import ops as uops
from keras_unitscale.ops.activations import canonical_activation, serialize_activation


@keras.saving.register_keras_serializable(package="keras_unitscale")
class Activation(keras.layers.Layer):
    """Applies a unit-scaled nonlinearity: drop-in for `keras.layers.Activation`.

    Args:
        activation: any Keras activation, a name or a function (see `Dense`). Elementwise
            ones are unit-scaled; `"softmax"` and `"log_softmax"` (over the last axis) are
            applied as they are, for the probabilities at a model's output.
        constraint: how the forward and gradient scales are tied.

    Example:
    >>> import numpy as np
    >>> import keras_unitscale as ku
    >>> x = np.random.default_rng(0).standard_normal((256, 1024)).astype("float32")
    >>> bool(abs(float(np.std(ku.layers.Activation("relu")(x))) - 1) < 0.05)
    True
    """

    def __init__(self, activation, constraint="to_output_scale", **kwargs):
        super().__init__(**kwargs)
        self.activation = canonical_activation(activation)
        self.constraint = uops.validate_constraint(constraint)
        self.supports_masking = True
        self.built = True

    def call(self, inputs):
        return uops.activation(inputs, self.activation, self.constraint)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(activation=serialize_activation(self.activation), constraint=self.constraint)
        return config
