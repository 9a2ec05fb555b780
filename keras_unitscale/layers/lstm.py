"""Unit-scaled `LSTM`: the base (`keras_unitscale.layers.recurrent`) with four gates, two
states and the LSTM op."""

import keras

from keras_unitscale.layers.recurrent import (  # noqa: F401  (the names' old home)
    RecurrentWeights,
    UnitScaledRNN,
    keras_rnn_arguments,
    serialize_rnn_arguments,
)
from keras_unitscale.ops.recurrent import lstm

_RecurrentWeights, _UnitScaledRNN = RecurrentWeights, UnitScaledRNN  # the names' old spelling


@keras.saving.register_keras_serializable(package="keras_unitscale")
class LSTM(UnitScaledRNN):
    """Long short-term memory with unit scaling: drop-in for `keras.layers.LSTM`.

    The standard LSTM (tanh/sigmoid, Keras' gate order and weight layout) with N(0, 1)
    weights and fixed scales derived in `docs/lstm.md`:
    - the input path is scaled by `sqrt((1 - eta2) / input_dim)` and the recurrent path by
      `kappa sqrt(eta2 / units)`, so every gate pre-activation is unit-normal; the recurrent
      share `eta2` (about 0.16) keeps the backward gain per step near 1/4 in the mean field,
      so gradients stay bounded for any sequence length;
    - the output `o * tanh(c)`, of std `1 / kappa` (kappa about 5.2), is multiplied by
      `kappa`; the returned `h` state is in the same units (and so is an `initial_state` h),
      the `c` state is unscaled;
    - weight gradients are scaled by `n ** -0.5`, `n` the batch x time positions receiving a
      gradient (batch only when `return_sequences=False`), and U's by `kappa` more.
    At initialisation, for unit-normal inputs and unit-normal gradients on every output, the
    output has std near 1 and the input and weight gradient stds between 0.7 and 1.5, for
    any sequence length. The scales are folded into the weights once per call, so the loop
    is a plain LSTM (the backend's fused cuDNN kernel where Keras would use it).

    Args:
        units: positive int, size of the output and of the states.
        dropout: float in [0, 1), unit-scaled dropout on the inputs (one mask per sequence).
        recurrent_dropout: float in [0, 1), the same on the recurrent state.
        seed: int seed for the dropout masks.
        use_bias: whether the gates have a bias.
        unit_forget_bias: start the forget-gate bias at 1 (Keras' default, Jozefowicz et al.)
            instead of 0. Off by default: with unit-normal gates a zero bias already gives a
            half-open forget gate, and the scales are derived for the chosen bias either way;
            with 1 the longer cell memory lifts the bias gradient to about 2 at 128 steps.
        constraint: ties the input path's forward scale and input-gradient scale:
            `"to_output_scale"` (default), `"to_grad_input_scale"`, `"gmean"` or `None`.
        return_sequences, return_state, go_backwards, stateful, unroll: as in
            `keras.layers.LSTM`.
        use_cudnn: `"auto"`, `True` or `False`, as in `keras.layers.LSTM`.
        **kwargs: `name`, `dtype`, `trainable`, `zero_output_for_mask`, ...; and Keras'
            weight arguments: `kernel_`, `recurrent_` and `bias_` + `initializer`,
            `regularizer`, `constraint`, and `activity_regularizer`, honoured as in Keras (an
            initializer that breaks unit scale, such as Keras' default `orthogonal`, is
            warned about). `activation` and `recurrent_activation` must be Keras' defaults
            (tanh, sigmoid): the scales are derived for them.

    The attribute `fp8` (default None) takes an FP8 simulation (see
    `keras_unitscale.ops.formats.FP8Simulation`) for the input projection and the recurrent
    kernel.

    Example:
    >>> import numpy as np
    >>> import keras_unitscale as ku
    >>> x = np.random.default_rng(0).standard_normal((64, 20, 32)).astype("float32")
    >>> y = ku.layers.LSTM(48, return_sequences=True)(x)
    >>> tuple(y.shape), bool(0.75 < float(np.std(y)) < 1.33)
    ((64, 20, 48), True)
    >>> out, h, c = ku.layers.LSTM(8, return_state=True)(x)
    >>> tuple(out.shape), bool(np.allclose(out, h))
    ((64, 8), True)
    """

    _kind = "lstm"
    _op = staticmethod(lstm)
    _gates = 4  # i, f, c, o
    _bias_rows = 1
    _state_count = 2  # h, c

    def __init__(
        self,
        units,
        dropout=0.0,
        recurrent_dropout=0.0,
        seed=None,
        use_bias=True,
        unit_forget_bias=False,
        constraint="to_output_scale",
        return_sequences=False,
        return_state=False,
        go_backwards=False,
        stateful=False,
        unroll=False,
        use_cudnn="auto",
        **kwargs,
    ):
        super().__init__(
            units, dropout, recurrent_dropout, seed, use_bias, constraint,
            return_sequences, return_state, go_backwards, stateful, unroll, use_cudnn,
            forget_bias=1.0 if unit_forget_bias else 0.0,
            **kwargs,
        )
        self.unit_forget_bias = bool(unit_forget_bias)

    def _cell_arguments(self):
        return {"forget_bias": self.cell.forget_bias}

    def get_config(self):
        config = super().get_config()
        config["unit_forget_bias"] = self.unit_forget_bias
        return config
