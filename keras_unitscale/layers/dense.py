"""Unit-scaled `Dense`."""

import keras

from keras_unitscale import ops as uops
from keras_unitscale.layers import _keras_arguments, _weights
from keras_unitscale.layers._quantize import QuantizableKernels
from keras_unitscale.ops.formats import attach_fp8, fp8_from_config, fp8_to_config
from keras_unitscale.layers._validation import (
    float_input,
    min_rank,
    positive_int,
    positive_number,
)
from keras_unitscale.ops.activations import (
    PROBABILITY_ACTIVATIONS,
    canonical_activation,
    serialize_activation,
)


@keras.saving.register_keras_serializable(package="keras_unitscale")
class Dense(QuantizableKernels, keras.layers.Layer):
    """Densely connected layer with unit scaling: drop-in for `keras.layers.Dense`.

    Computes `activation(x @ kernel / sqrt(fan_in) + bias)`, with the kernel drawn from
    N(0, 1) and separate backward scales for the input gradient (`fan_out ** -0.5`) and the
    weight gradients (`batch ** -0.5`), tied by `constraint`. The activation is the unit-scaled
    version of any elementwise Keras activation, by name or function: the scales of `"gelu"`,
    `"silu"`/`"swish"`, `"relu"`, `"tanh"` and `"sigmoid"` are derived from their formulas,
    those of the others (`"elu"`, `"softplus"`, `keras.activations.mish`, your own registered
    function, ...) measured once (`keras_unitscale.ops.activations.measured_scales`).
    `"softmax"` and `"log_softmax"` are not elementwise and are accepted on a readout only,
    where they turn the logits into (log-)probabilities, unscaled, for a loss such as
    `sparse_categorical_crossentropy` without `from_logits`.

    Args:
        units: positive int, output size.
        activation: a Keras activation (name or function) or `None`.
        use_bias: whether to add a (zero-initialised) bias.
        constraint: `"to_output_scale"` (default), `"to_grad_input_scale"`, `"gmean"` or
            `None`; see `keras_unitscale.ops.apply_constraint`.
        readout: if true, the u-muP readout rule (`1 / fan_in` forward, unconstrained); use it
            for the last layer before a loss.
        output_mult: u-muP's output multiplier, on a readout only: the logits (bias included)
            are multiplied by it in the forward pass, the gradients are not
            (`keras_unitscale.ops.readout(..., mult=)`, the one place the rule lives).
        kernel_initializer, bias_initializer: as in Keras; default N(0, 1) and zeros. An
            initializer that does not draw unit-variance weights (Keras' `glorot_uniform`)
            starts the layer off unit scale, and is warned about.
        kernel_regularizer, bias_regularizer, activity_regularizer: as in Keras (their
            penalties are in `model.losses`).
        kernel_constraint, bias_constraint: as in Keras (applied after each optimizer step).
        **kwargs: `name`, `dtype`, `trainable`, ... Keras' `lora_rank`, `lora_alpha` and
            `quantization_config` are accepted at their default `None` only (no LoRA
            adapters; quantise with `quantize()`), refused otherwise with the reason.

    Example:
    >>> import numpy as np
    >>> import keras_unitscale as ku
    >>> layer = ku.layers.Dense(64, activation="gelu")
    >>> y = layer(np.random.default_rng(0).standard_normal((256, 128)).astype("float32"))
    >>> tuple(y.shape), bool(abs(float(np.std(y)) - 1) < 0.1)
    ((256, 64), True)
    """

    def __init__(
        self,
        units,
        activation=None,
        use_bias=True,
        constraint="to_output_scale",
        readout=False,
        output_mult=1.0,
        kernel_initializer=None,
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        kernel_constraint=None,
        bias_constraint=None,
        **kwargs,
    ):
        fp8 = kwargs.pop("fp8", None)  # a saved FP8 setting (keras_unitscale.precision)
        _keras_arguments.refuse(kwargs, "Dense", {
            "lora_rank": _keras_arguments.LORA,
            "lora_alpha": _keras_arguments.LORA,
            "quantization_config": _keras_arguments.QUANTIZATION_CONFIG,
        })
        super().__init__(**kwargs)
        _weights.set_kernel_and_bias_options(
            self, kernel_regularizer, bias_regularizer, kernel_constraint, bias_constraint
        )
        self._user_initializer = kernel_initializer is not None
        self.units = positive_int(units, "units")
        self.activation = canonical_activation(activation)
        self.use_bias = bool(use_bias)
        self.constraint = uops.validate_constraint(constraint)
        self.readout = bool(readout)
        self.output_mult = positive_number(output_mult, "output_mult")
        if self.output_mult != 1.0 and not self.readout:
            raise ValueError(
                f"`output_mult={output_mult!r}` multiplies a readout's logits; it needs "
                "`readout=True` (a hidden layer's output scale is set by its rule)."
            )
        if self.activation in PROBABILITY_ACTIVATIONS and not self.readout:
            raise ValueError(
                f"`activation={activation!r}` turns outputs into probabilities, which no "
                "scale can make unit; it is accepted on the last layer, `readout=True`. "
                "Inside a network use an elementwise activation."
            )
        self.kernel_initializer = keras.initializers.get(
            kernel_initializer or keras.initializers.RandomNormal(stddev=1.0)
        )
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.supports_masking = True
        attach_fp8(self, fp8_from_config(fp8))

    def build(self, input_shape):
        min_rank(input_shape, 2)
        fan_in = input_shape[-1]
        if fan_in is None:
            raise ValueError(
                f"The last dimension of `inputs` must be known; received shape {input_shape}."
            )
        self.kernel = self.add_kernel(
            "kernel", (fan_in, self.units), channel_axis=1, initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer, constraint=self.kernel_constraint,
        )
        _weights.declare(self.kernel, "readout" if self.readout else "weight", int(fan_in))
        if self._user_initializer and self.quantization_mode is None:
            _weights.warn_if_not_unit(self.kernel, "kernel_initializer", self)
        self.bias = None
        if self.use_bias:
            self.bias = _weights.declare(self.add_weight(
                name="bias", shape=(self.units,), initializer=self.bias_initializer,
                regularizer=self.bias_regularizer, constraint=self.bias_constraint,
            ), "bias")

    def call(self, inputs):
        float_input(inputs)
        if self.readout:
            y = uops.readout(inputs, self.kernel_value("kernel"), self.bias, fp8=self.fp8,
                             mult=self.output_mult)
        else:
            y = uops.linear(
                inputs, self.kernel_value("kernel"), self.bias, self.constraint, fp8=self.fp8
            )
        return uops.activation(y, self.activation, self.constraint)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self):
        config = super().get_config()
        config.update(
            units=self.units,
            activation=serialize_activation(self.activation),
            use_bias=self.use_bias,
            constraint=self.constraint,
            readout=self.readout,
            output_mult=self.output_mult,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            bias_initializer=keras.initializers.serialize(self.bias_initializer),
        )
        config.update(_weights.kernel_and_bias_config(self))
        if self.fp8 is not None:
            config["fp8"] = fp8_to_config(self.fp8)
        return config
