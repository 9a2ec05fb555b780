"""A residual connection around any layer, with unit-scaled weighting."""

import keras

from keras_unitscale import ops as uops
from keras_unitscale._validation import shapes_match


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
        branch = self.layer(residual, **kwargs)
        self._check_branch(branch.shape, inputs.shape)
        return uops.residual_add(branch, skip, self.tau)

    def compute_output_shape(self, input_shape):
        try:
            branch = self.layer.compute_output_shape(input_shape)
        except Exception:  # a layer that cannot say: `call` checks the real shape
            return input_shape
        self._check_branch(branch, input_shape)
        return input_shape

    def _check_branch(self, branch_shape, input_shape):
        # Static shapes: checked under `jit` too, before the backend's broadcasting error.
        if not shapes_match(branch_shape, input_shape):
            raise ValueError(
                f"`layer` must keep the shape of its input, which Residual adds its output "
                f"to: inputs of shape {tuple(input_shape)}; {self.layer.name!r} returned "
                f"shape {tuple(branch_shape)}."
            )

    def get_config(self):
        config = super().get_config()
        config.update(layer=keras.saving.serialize_keras_object(self.layer), tau=self.tau)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["layer"] = keras.saving.deserialize_keras_object(config["layer"])
        return cls(**config)


@keras.saving.register_keras_serializable(package="keras_unitscale")
class ResidualSplit(keras.layers.Layer):
    """The fork of a functional residual connection: `(residual, skip)`, both equal to `x`.

    For residual connections written as graphs (`keras.layers.Add()([x, f(x)])`) rather than
    wrapped in `Residual`: feed `residual` into the branch `f` and `skip` into `ResidualAdd`
    with the same `tau`. On the way back the branch's gradient is multiplied by
    `tau / sqrt(1 + tau^2)` and the skip's by `1 / sqrt(1 + tau^2)`
    (`keras_unitscale.ops.residual_split`), so every tensor in the branch sees a unit gradient
    while the summed gradient stays the true one. `keras_unitscale.unit_scale` inserts these
    pairs when it converts a model.

    Args:
        tau: non-negative branch weight relative to the skip connection.

    Example:
    >>> import keras
    >>> import keras_unitscale as ku
    >>> x = keras.Input((16,))
    >>> residual, skip = ku.layers.ResidualSplit(tau=0.5)(x)
    >>> y = ku.layers.ResidualAdd(tau=0.5)([ku.layers.MLP(32)(residual), skip])
    >>> tuple(keras.Model(x, y).output_shape)
    (None, 16)
    """

    def __init__(self, tau=1.0, **kwargs):
        super().__init__(**kwargs)
        uops.residual_coefficients(tau)  # validates
        self.tau = float(tau)
        self.supports_masking = True

    def call(self, inputs):
        residual, skip = uops.residual_split(inputs, self.tau)
        return residual, skip

    def compute_output_shape(self, input_shape):
        return input_shape, input_shape

    def compute_mask(self, inputs, mask=None):
        return mask, mask

    def get_config(self):
        config = super().get_config()
        config.update(tau=self.tau)
        return config


@keras.saving.register_keras_serializable(package="keras_unitscale")
class ResidualAdd(keras.layers.Layer):
    """The join of a functional residual connection: `a * residual + b * skip` for inputs
    `[residual, skip]`, with `(a, b) = (tau, 1) / sqrt(1 + tau^2)`.

    Takes `skip` from a `ResidualSplit` with the same `tau` (see there); the gradient passes to
    both inputs unchanged (`keras_unitscale.ops.residual_add`), the split applies `a` and `b`.

    Args:
        tau: non-negative branch weight relative to the skip connection.

    Example:
    >>> import numpy as np
    >>> import keras_unitscale as ku
    >>> x = np.ones((2, 4), "float32")
    >>> y = ku.layers.ResidualAdd(tau=1.0)([x, x])  # (x + x) / sqrt(2)
    >>> round(float(y[0, 0]), 4)
    1.4142
    """

    def __init__(self, tau=1.0, **kwargs):
        super().__init__(**kwargs)
        uops.residual_coefficients(tau)  # validates
        self.tau = float(tau)
        self.supports_masking = True

    def _check(self, pair, shapes=False):
        """`pair` must be `[residual, skip]`: two tensors, or (`shapes`) two shape tuples."""
        is_pair = isinstance(pair, (list, tuple)) and len(pair) == 2
        if is_pair and shapes:
            is_pair = all(isinstance(shape, (list, tuple)) for shape in pair)
        if not is_pair:
            raise ValueError(
                "`inputs` of `ResidualAdd` must be a list `[residual, skip]` of two tensors; "
                f"received {pair!r}."
            )

    def build(self, input_shape):
        self._check(input_shape, shapes=True)
        residual, skip = (tuple(shape) for shape in input_shape)
        if residual != skip:
            raise ValueError(
                "`inputs` of `ResidualAdd` must have the same shape; received residual "
                f"{residual} and skip {skip}."
            )

    def call(self, inputs):
        self._check(inputs)
        residual, skip = inputs
        return uops.residual_add(residual, skip, self.tau)

    def compute_output_shape(self, input_shape):
        self._check(input_shape, shapes=True)
        return input_shape[0]

    def compute_mask(self, inputs, mask=None):
        if mask is None:
            return None
        masks = [m for m in mask if m is not None]
        if not masks:
            return None
        out = masks[0]
        for m in masks[1:]:
            out = keras.ops.logical_and(out, m)
        return out

    def get_config(self):
        config = super().get_config()
        config.update(tau=self.tau)
        return config
