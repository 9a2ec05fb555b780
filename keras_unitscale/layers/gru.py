"""Unit-scaled `GRU`: the base (`keras_unitscale.layers.recurrent`) with three gates, one
state, a two-row bias and the GRU op."""

import keras

from keras_unitscale.layers.recurrent import UnitScaledRNN
from keras_unitscale.ops.recurrent import gru


@keras.saving.register_keras_serializable(package="keras_unitscale")
class GRU(UnitScaledRNN):
    """Gated recurrent unit with unit scaling: drop-in for `keras.layers.GRU`.

    Keras' default GRU (`reset_after=True`, tanh/sigmoid, gates z, r, candidate, the same
    weight layout and a `[2, 3 * units]` bias) with N(0, 1) weights and zero biases, scaled
    like the LSTM (`docs/lstm.md`, section GRU):
    - the input path by `sqrt((1 - eta2) / input_dim)`, the recurrent path by
      `kappa sqrt(eta2 / units)`, with `eta2` about 0.48 chosen so that the mean-field
      backward gain through the recurrent kernel is 1/4 (0.54 with the update-gate carry);
    - the output (and the returned / initial state) is `kappa h`, kappa about 2.7, so that
      the stationary state, of std `1 / kappa`, comes out unit;
    - weight gradients are scaled by `n ** -0.5` (`n` = batch x time positions receiving a
      gradient; batch only when `return_sequences=False`), the recurrent kernel's by `kappa`
      more.
    At initialisation (unit-normal inputs and gradients on every output) the output has std
    near 1 and the input and weight gradient stds lie between 0.5 and 2 for any length.
    The loop is a plain GRU: Keras' own loop, or the backend's fused GRU where Keras would
    use it (cuDNN on TensorFlow with a GPU; JAX's scan GRU without a mask).

    Args:
        units: positive int, size of the output and of the state.
        dropout, recurrent_dropout: floats in [0, 1), unit-scaled dropout on the inputs and
            on the recurrent state (one mask per sequence).
        seed: int seed for the dropout masks.
        use_bias: whether the gates have biases.
        constraint: ties the input path's forward scale and input-gradient scale:
            `"to_output_scale"` (default), `"to_grad_input_scale"`, `"gmean"` or `None`.
        return_sequences, return_state, go_backwards, stateful, unroll, use_cudnn: as in
            `keras.layers.GRU`.
        **kwargs: `name`, `dtype`, `trainable`, `zero_output_for_mask`, ...; and Keras'
            weight arguments as `LSTM` takes them (`kernel_`/`recurrent_`/`bias_`
            initializer, regularizer, constraint; `activity_regularizer`). `activation`
            and `recurrent_activation` must be Keras' defaults and `reset_after` True: the
            scales are derived for that GRU.

    The attribute `fp8` (default None) takes an FP8 simulation for the input projection and
    the recurrent kernel.

    Example:
    >>> import numpy as np
    >>> import keras_unitscale as ku
    >>> x = np.random.default_rng(0).standard_normal((64, 20, 32)).astype("float32")
    >>> y = ku.layers.GRU(48, return_sequences=True)(x)
    >>> tuple(y.shape), bool(0.75 < float(np.std(y)) < 1.33)
    ((64, 20, 48), True)
    >>> out, h = ku.layers.GRU(8, return_state=True)(x)
    >>> tuple(h.shape), bool(np.allclose(out, h))
    ((64, 8), True)
    """

    _kind = "gru"
    _op = staticmethod(gru)
    _gates = 3  # z, r, candidate
    _bias_rows = 2  # input and recurrent rows (reset_after=True)
    _state_count = 1  # h

    def __init__(
        self,
        units,
        dropout=0.0,
        recurrent_dropout=0.0,
        seed=None,
        use_bias=True,
        constraint="to_output_scale",
        return_sequences=False,
        return_state=False,
        go_backwards=False,
        stateful=False,
        unroll=False,
        use_cudnn="auto",
        **kwargs,
    ):
        if kwargs.pop("reset_after", True) is not True:
            raise ValueError(
                "`reset_after` must be True (Keras' default, the cuDNN-compatible GRU): the "
                "unit-scaled GRU applies the reset gate after the recurrent matmul, whose "
                "scale is derived for that form."
            )
        super().__init__(
            units, dropout, recurrent_dropout, seed, use_bias, constraint,
            return_sequences, return_state, go_backwards, stateful, unroll, use_cudnn,
            **kwargs,
        )
