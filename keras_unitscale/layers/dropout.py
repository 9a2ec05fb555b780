"""Unit-scaled `Dropout`."""

import keras

from keras_unitscale import ops as uops
from keras_unitscale.ops.dropout import validate_rate


@keras.saving.register_keras_serializable(package="keras_unitscale")
class Dropout(keras.layers.Layer):
    """Dropout that keeps unit std: kept values are scaled by `(1 - rate) ** -0.5`.

    Keras' `Dropout` scales by `1 / (1 - rate)`, which keeps the mean but inflates the std;
    here the std stays one in both passes. Identity when `training` is false.

    Args:
        rate: float in [0, 1), the fraction of entries dropped.
        noise_shape: as in `keras.layers.Dropout`.
        seed: int seed.

    Example:
    >>> import numpy as np
    >>> import keras_unitscale as ku
    >>> x = np.ones((2, 4), "float32")
    >>> np.asarray(ku.layers.Dropout(0.5)(x, training=False)).tolist()
    [[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0]]
    """

    def __init__(self, rate, noise_shape=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.rate = validate_rate(rate)
        self.noise_shape = noise_shape
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed) if self.rate > 0 else None
        self.supports_masking = True
        self.built = True

    def call(self, inputs, training=False):
        if training and self.rate > 0:
            return uops.dropout(inputs, self.rate, self.noise_shape, self.seed_generator)
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(rate=self.rate, noise_shape=self.noise_shape, seed=self.seed)
        return config
