"""Unit-scaled MLP, plain or gated."""

import keras

from keras_unitscale import ops as uops
from keras_unitscale._validation import positive_int, probability
from keras_unitscale.layers.dense import Dense
from keras_unitscale.layers.dropout import Dropout
from keras_unitscale.ops.activations import (
    PROBABILITY_ACTIVATIONS,
    canonical_activation,
    serialize_activation,
)


@keras.saving.register_keras_serializable(package="keras_unitscale")
class MLP(keras.layers.Layer):
    """The transformer feed-forward block: `down(act(up(x)))`, or gated `down(act(gate(x)) * up(x))`.

    Args:
        hidden_dim: size of the hidden layer (commonly 4x the model width; about 8/3x when
            gated, to keep the parameter count).
        output_dim: output size; defaults to the input size.
        activation: an elementwise Keras activation, a name or a function (`"gelu"` plain,
            `"silu"` gated, ...), unit-scaled as in `Dense`.
        gated: use the gated (GLU) form.
        use_bias: biases in the projections.
        dropout: rate of the unit-scaled dropout applied to the hidden activations.
        constraint: passed to every op.

    Example:
    >>> import numpy as np
    >>> import keras_unitscale as ku
    >>> mlp = ku.layers.MLP(256, activation="silu", gated=True)
    >>> tuple(mlp(np.zeros((2, 10, 64), "float32")).shape)
    (2, 10, 64)
    """

    def __init__(
        self,
        hidden_dim,
        output_dim=None,
        activation="gelu",
        gated=False,
        use_bias=False,
        dropout=0.0,
        constraint="to_output_scale",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.hidden_dim = positive_int(hidden_dim, "hidden_dim")
        self.output_dim = None if output_dim is None else positive_int(output_dim, "output_dim")
        self.activation = canonical_activation(activation)
        if self.activation in PROBABILITY_ACTIVATIONS:
            raise ValueError(
                f"`activation` must be elementwise inside an MLP; received {activation!r}."
            )
        self.gated = bool(gated)
        self.use_bias = bool(use_bias)
        self.dropout = probability(dropout, "dropout")
        self.constraint = uops.validate_constraint(constraint)
        self.supports_masking = True
        dense = dict(use_bias=self.use_bias, constraint=self.constraint, dtype=self.dtype_policy)
        self.up = Dense(self.hidden_dim, name="up", **dense)
        self.gate = Dense(self.hidden_dim, name="gate", **dense) if self.gated else None
        self.hidden_dropout = Dropout(self.dropout, name="dropout", dtype=self.dtype_policy)
        self._dense = dense

    def build(self, input_shape):
        out_dim = self.output_dim or input_shape[-1]
        self.down = Dense(out_dim, name="down", **self._dense)
        self.up.build(input_shape)
        if self.gate is not None:
            self.gate.build(input_shape)
        self.down.build(tuple(input_shape[:-1]) + (self.hidden_dim,))

    def call(self, inputs, training=False):
        if self.gated:
            gate = uops.activation(self.gate(inputs), self.activation, self.constraint)
            hidden = gate * self.up(inputs)
        else:
            hidden = uops.activation(self.up(inputs), self.activation, self.constraint)
        hidden = self.hidden_dropout(hidden, training=training)
        return self.down(hidden)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.output_dim or input_shape[-1],)

    def get_config(self):
        config = super().get_config()
        config.update(
            hidden_dim=self.hidden_dim,
            output_dim=self.output_dim,
            activation=serialize_activation(self.activation),
            gated=self.gated,
            use_bias=self.use_bias,
            dropout=self.dropout,
            constraint=self.constraint,
        )
        return config
