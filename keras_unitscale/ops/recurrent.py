"""Unit-scaled LSTM: the scale rules and the sequence op.

Gates (Keras order i, f, c, o): `z_t = s_x x_t W + s_h h_{t-1} U + b`,
`c_t = sig(z_f) c_{t-1} + sig(z_i) tanh(z_c)`, `h_t = sig(z_o) tanh(c_t)`, output `kappa h_t`.
`W: [d, 4u]`, `U: [u, 4u]` are N(0, 1); `b` is zero (one on the forget block if asked).

Mean-field derivation (full version in docs/lstm.md). Assume every gate pre-activation is
N(0, 1) (the forget gate N(b_f, 1)) and gates, cell and gradients independent per unit:
- cell: `Var c = E[sig^2] E[tanh^2] / (1 - E[sig_f^2])` (the stationary point of the carry);
  `E[h^2] = E[sig^2] E[tanh(c)^2]`; the output constant is `kappa = E[h^2] ** -0.5`.
- pre-activations: the x-path and the h-path get fan-in scales, `s_x = sqrt((1 - eta2) / d)`
  and `s_h = sqrt(eta2 / u) * kappa` (h has std `1 / kappa`), so their sum is unit.
- backward: a gradient G_h on h gives the four gates `Q G_h` (summed per unit; Q below); the
  h-path sends `eta2 kappa^2 Q G_h` back one step. That per-step gain is set to `RHO = 1/4`
  (`eta2 = RHO / (kappa^2 Q)`, about 0.16): a unit gradient on every output then gives
  `G_h = kappa^2 / (1 - RHO)`, bounded for any length. Correlations along time that the
  mean field drops make the true gain larger (the layer turns chaotic near eta2 = 0.4); the
  quarter leaves room for that.
- input gradient: `s^2 u Q G_h`, so the scale giving a unit input gradient is
  `(u Q kappa^2 / (1 - RHO)) ** -0.5`; `constraint` ties it to `s_x` as for `linear`.
- weight gradients are sums over the `n` (batch x time) positions that receive an upstream
  gradient: `n ** -0.5` for W and b, `kappa n ** -0.5` for U (its input h has std 1/kappa).

Every scale is applied outside the recurrence, by folding it into the weights
(`scale_fwd(scale_bwd(W, weight_grad_scale), s)`) once per call, so the loop is a plain LSTM
and a backend's fused kernel (cuDNN) can run it. Folding `s_h` with `scale_fwd` gives the h-path a backward
scale equal to its forward one, as the constraint on that non-cut edge requires; `kappa` is a
plain multiply for the same reason, and so is its inverse on a user-supplied initial `h`.
"""

import collections
import functools
import math

import keras
import numpy as np
from keras import ops
from keras.src import backend as keras_backend

from keras_unitscale.backend import backend_name
from keras_unitscale.ops.constraints import apply_constraint
from keras_unitscale.ops.linear import _product
from keras_unitscale.ops.scale import leading_size, rsqrt_size, scale_bwd, scale_fwd

RHO = 0.25
"""Mean-field backward gain per step of the h-path (see the module docstring)."""

LSTMScales = collections.namedtuple(
    "LSTMScales", ["input", "input_grad", "recurrent", "output", "recurrent_weight_grad"]
)
LSTMScales.__doc__ = """Scales of a unit-scaled LSTM (Python floats).

`input`, `input_grad`: forward scale of the x-path and the scale of the input gradient (tied
by the constraint); `recurrent`: the h-path scale (forward = backward); `output`: kappa;
`recurrent_weight_grad`: the factor on U's gradient on top of `n ** -0.5`.
"""


def _expect(fn, mean=0.0, var=1.0):
    # E[fn(z)] for z ~ N(mean, var), by a Riemann sum on a fine grid (tails < 1e-30).
    t = np.linspace(-12.0, 12.0, 48_001)
    w = np.exp(-0.5 * t * t) * (t[1] - t[0]) / math.sqrt(2.0 * math.pi)
    return float(np.sum(w * fn(mean + math.sqrt(var) * t)))


def _sig(z):
    return 1.0 / (1.0 + np.exp(-z))


@functools.lru_cache(maxsize=None)
def lstm_moments(forget_bias=0.0):
    """`(kappa, eta2, q, var_c)` of the mean-field derivation for a forget-gate bias.

    Example:
    >>> from keras_unitscale.ops.recurrent import lstm_moments
    >>> kappa, eta2, q, var_c = lstm_moments(0.0)
    >>> round(kappa, 2), round(eta2, 3)
    (5.2, 0.159)
    """
    bf = float(forget_bias)
    sig2 = _expect(lambda z: _sig(z) ** 2)
    tanh2 = _expect(lambda z: np.tanh(z) ** 2)
    forget2 = _expect(lambda z: _sig(z) ** 2, bf)
    var_c = sig2 * tanh2 / (1.0 - forget2)
    tanh_c2 = _expect(lambda c: np.tanh(c) ** 2, 0.0, var_c)
    kappa = (sig2 * tanh_c2) ** -0.5
    # Backward, per unit of E[(dL/dh)^2]: the output gate, then the cell (with its carry).
    dsig2 = _expect(lambda z: (_sig(z) * (1.0 - _sig(z))) ** 2)
    dsig_f2 = _expect(lambda z: (_sig(z) * (1.0 - _sig(z))) ** 2, bf)
    dtanh2 = _expect(lambda z: (1.0 - np.tanh(z) ** 2) ** 2)
    to_cell = sig2 * _expect(lambda c: (1.0 - np.tanh(c) ** 2) ** 2, 0.0, var_c)
    cell = to_cell / (1.0 - forget2)
    q = tanh_c2 * dsig2 + cell * (var_c * dsig_f2 + tanh2 * dsig2 + sig2 * dtanh2)
    eta2 = RHO / (kappa**2 * q)
    return kappa, eta2, q, var_c


def lstm_scales(input_dim, units, forget_bias=0.0, constraint="to_output_scale"):
    """The `LSTMScales` for inputs of size `input_dim` and `units` cells.

    Example:
    >>> from keras_unitscale.ops.recurrent import lstm_scales
    >>> s = lstm_scales(128, 128)
    >>> round(s.output, 2), round(s.input, 3), round(s.recurrent, 3)
    (5.2, 0.081, 0.183)
    """
    kappa, eta2, q, _ = lstm_moments(forget_bias)
    fwd = ((1.0 - eta2) / input_dim) ** 0.5
    bwd = (units * q * kappa**2 / (1.0 - RHO)) ** -0.5
    x_fwd, x_bwd = apply_constraint(constraint, fwd, bwd)
    return LSTMScales(x_fwd, x_bwd, kappa * (eta2 / units) ** 0.5, kappa, kappa)


def lstm_weights(kernel, recurrent_kernel, bias, contributions, scales):
    """Effective `(kernel, recurrent_kernel, bias)`: the scales folded into the weights.

    `contributions` is the number of (batch x time) positions receiving an upstream gradient
    (an int or a scalar tensor, see `leading_size`). Computed once per call, outside the loop.
    """
    g = rsqrt_size(contributions)
    kernel = scale_fwd(scale_bwd(kernel, g), scales.input)
    recurrent_kernel = scale_fwd(
        scale_bwd(recurrent_kernel, g * scales.recurrent_weight_grad), scales.recurrent
    )
    if bias is not None:
        bias = scale_bwd(bias, g)
    return kernel, recurrent_kernel, bias


def fused_lstm_disables_jit(unroll=False, use_bias=True):
    """Whether the fused kernel may run here and is one XLA cannot compile (cuDNN on TF).

    Mirrors `keras.layers.LSTM`, which then sets `supports_jit = False`.
    """
    return backend_name() == "tensorflow" and _fused_ok(unroll, use_bias)


def _fused_ok(unroll, use_bias):
    return keras_backend.cudnn_ok(
        keras.activations.tanh, keras.activations.sigmoid, unroll, use_bias=use_bias
    )


def _step(kernel, recurrent_kernel, bias, recurrent_dropout_mask):
    # With `kernel` None the step input is the precomputed projection `x_t W + b`.
    def step(inputs, states):
        h, c = states
        if recurrent_dropout_mask is not None:
            h = h * recurrent_dropout_mask
        z = ops.matmul(h, recurrent_kernel)
        if kernel is None:
            z = z + inputs
        else:
            z = z + ops.matmul(inputs, kernel)
            if bias is not None:
                z = z + bias
        z_i, z_f, z_c, z_o = ops.split(z, 4, axis=-1)
        c = ops.sigmoid(z_f) * c + ops.sigmoid(z_i) * ops.tanh(z_c)
        h = ops.sigmoid(z_o) * ops.tanh(c)
        return h, [h, c]

    return step


def lstm(
    sequences,
    initial_state,
    kernel,
    recurrent_kernel,
    bias=None,
    mask=None,
    dropout_mask=None,
    recurrent_dropout_mask=None,
    return_sequences=False,
    go_backwards=False,
    unroll=False,
    zero_output_for_mask=False,
    forget_bias=0.0,
    constraint="to_output_scale",
    fp8=None,
    use_fused="auto",
):
    """Runs a unit-scaled LSTM over `sequences: [batch, time, d]`.

    Args:
        sequences: unit-scale inputs.
        initial_state: `[h, c]`, each `[batch, units]`; `h` in output units (as returned).
        kernel, recurrent_kernel, bias: `[d, 4u]`, `[u, 4u]`, `[4u]` or None; gates i, f, c, o.
        mask: optional `[batch, time]` boolean mask (masked steps carry the state over).
        dropout_mask, recurrent_dropout_mask: optional `[batch, d]` / `[batch, u]` masks
            already unit-scaled (see `keras_unitscale.ops.dropout`), shared over time.
        return_sequences, go_backwards, unroll, zero_output_for_mask: as in `keras.layers.RNN`.
        forget_bias: the forget-gate bias at initialisation (enters the derivation).
        constraint: ties the input path's forward and input-gradient scales.
        fp8: optional FP8 simulation (see `keras_unitscale.ops.linear`). With it, the input
            projection is one batched matmul outside the loop, with all of its casts there,
            and the recurrent kernel is cast once per call.
        use_fused: `"auto"` tries the backend's fused kernel, `True` requires it, `False`
            never uses it. It runs the same maths; it is skipped with `fp8` or recurrent
            dropout.

    Returns:
        `(last_output, outputs, [h, c])` as `keras.src.backend.rnn` does, in output units.

    Example:
    >>> import numpy as np
    >>> from keras_unitscale import ops as uops
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((64, 16, 32)).astype("float32")
    >>> w, u = rng.standard_normal((32, 64)), rng.standard_normal((16, 64))
    >>> zeros = np.zeros((64, 16), "float32")
    >>> last, seq, (h, c) = uops.lstm(x, [zeros, zeros], w.astype("float32"),
    ...                               u.astype("float32"), return_sequences=True)
    >>> tuple(seq.shape), bool(0.75 < float(np.std(seq)) < 1.33)
    ((64, 16, 16), True)
    """
    if len(sequences.shape) != 3:
        raise ValueError(
            "`sequences` must have rank 3 (batch, timesteps, features); "
            f"received shape {tuple(sequences.shape)}."
        )
    units = int(recurrent_kernel.shape[0])
    scales = lstm_scales(int(kernel.shape[0]), units, forget_bias, constraint)
    n = leading_size(sequences, 1 if return_sequences else 2)
    w, u, b = lstm_weights(kernel, recurrent_kernel, bias, n, scales)
    h0, c0 = initial_state
    h0 = h0 * ops.cast(1.0 / scales.output, h0.dtype)

    x = sequences
    if dropout_mask is not None:
        x = x * ops.expand_dims(dropout_mask, 1)
    x = scale_bwd(x, scales.input_grad / scales.input)

    result = None
    if use_fused and fp8 is None and recurrent_dropout_mask is None:
        try:
            result = keras_backend.lstm(
                x, h0, c0, mask, kernel=w, recurrent_kernel=u, bias=b,
                activation=keras.activations.tanh,
                recurrent_activation=keras.activations.sigmoid,
                return_sequences=return_sequences, go_backwards=go_backwards, unroll=unroll,
            )
        except NotImplementedError:
            result = None
    if result is None and use_fused is True:
        raise ValueError(
            "`use_cudnn=True` was given, but the fused LSTM kernel cannot run here "
            "(no GPU, a mask it does not support, `fp8`, or recurrent dropout). "
            "Pass `use_cudnn='auto'`."
        )
    if result is None:
        if fp8 is None:
            # Projecting x_t inside the loop, as Keras does, beats one batched projection on
            # XLA:CPU (the [batch, time, 4u] intermediate leaves the cache); see
            # docs/benchmarks.md.
            inputs, step = x, _step(w, u, b, recurrent_dropout_mask)
        else:
            # One batched projection outside the loop, so that every cast is outside it too.
            inputs = _product(x, w, fp8)
            if b is not None:
                inputs = inputs + b
            step = _step(None, fp8.cast_forward(u), None, recurrent_dropout_mask)
        result = keras_backend.rnn(
            step,
            inputs,
            [h0, c0],
            go_backwards=go_backwards,
            mask=mask,
            unroll=unroll,
            input_length=sequences.shape[1],
            zero_output_for_mask=zero_output_for_mask,
            return_all_outputs=return_sequences,
        )
    last, outputs, (h, c) = result
    k = scales.output
    return last * k, outputs * k, [h * k, c]
