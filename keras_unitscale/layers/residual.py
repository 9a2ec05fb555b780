"""A residual connection around any layer, with unit-scaled weighting."""

import keras

from keras_unitscale import ops as uops


@keras.saving.register_keras_serializable(package="keras_unitscale")
class Residual(keras.layers.Layer):
    """`y = a * layer(x) + b * x` with `(a, b) = (tau, 1) / sqrt(1 + tau^2)`.

    The split/add pair (`keras_unitscale.ops.residual_split`/`residual_add`) keeps a unit
    stream unit in both passes for any `tau`, and the summed gradient is the true one. For a
    transformer, `keras_unitscale.ops.transformer_residual_taus` gives u-muP's per-layer taus.

    Args:
        layer: the branch, a Keras layer mapping `x` to a tensor of the same shape.
        tau: non-negative branch weight relative to the skip connection.

    Example:
    >>> import numpy as np
    >>> import keras_unitscale as ku
    >>> block = ku.layers.Residual(ku.layers.MLP(128), tau=0.5)
    >>> tuple(block(np.zeros((4, 32), "float32")).shape)
    (4, 32)
    """

    def __init__(self, layer, tau=1.0, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(layer, keras.layers.Layer):
            raise ValueError(f"`layer` must be a Keras layer; received {layer!r}.")
        uops.residual_coefficients(tau)  # validates
        self.layer = layer
        self.tau = float(tau)
        self.supports_masking = True

    def build(self, input_shape):
        if not self.layer.built:
            self.layer.build(input_shape)

    def call(self, inputs, training=False):
        residual, skip = uops.residual_split(inputs, self.tau)
        kwargs = {"training": training} if self.layer._call_has_training_arg else {}
        return uops.residual_add(self.layer(residual, **kwargs), skip, self.tau)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(layer=keras.saving.serialize_keras_object(self.layer), tau=self.tau)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["layer"] = keras.saving.deserialize_keras_object(config["layer"])
        return cls(**config)
