"""Unit-scaled recurrent layers (LSTM, GRU): the scale rules and the sequence ops.

LSTM (Keras gate order i, f, c, o): `z_t = s_x x_t W + s_h h_{t-1} U + b`,
`c_t = sig(z_f) c_{t-1} + sig(z_i) tanh(z_c)`, `h_t = sig(z_o) tanh(c_t)`, output `kappa h_t`.
GRU (Keras' `reset_after=True`, gates z, r, candidate): `h_t = z h_{t-1} + (1 - z) tanh(a)`,
`a = s_x x_t W_h + r (s_h h_{t-1} U_h + b_rec)`, output `kappa h_t`. Weights are N(0, 1),
biases zero (the LSTM's forget block may start at one).

Mean-field derivation (in full, with measurements, in docs/lstm.md). Assume each gate
pre-activation N(0, 1) (the LSTM forget gate N(b_f, 1)), and gates, states and gradients
independent per unit:
- forward: the stationary variance of the carried state (`c`, or the GRU's `h`) gives
  `E[h^2]`, and the output constant is `kappa = E[h^2] ** -0.5`;
- pre-activations: fan-in scales `s_x = sqrt((1 - eta2) / d)` on the x-path and
  `s_h = kappa sqrt(eta2 / u)` on the h-path (h has std `1 / kappa`), so their sum is unit;
- backward: a gradient `G_h` on h sends `eta2 kappa^2 Q G_h` back one step through the
  recurrent kernel (Q: per-unit sum over the gates). `eta2` is chosen so that this gain is
  `RHO = 1/4`: the naive `eta2 = 1/2` makes the LSTM chaotic (gradients explode with length);
  the quarter keeps a margin for the time correlations the mean field drops. The GRU's
  direct carry adds `E[z^2]` to its gain, `rho`. A unit gradient on every output then gives
  `G_h = kappa^2 / (1 - rho)` for any length;
- input gradient: variance `s^2 u Q_x G_h`; the unit-gradient scale
  `(u Q_x kappa^2 / (1 - rho)) ** -0.5` is tied to `s_x` by `constraint`, as in `linear`;
- weight gradients: `n ** -0.5` for W and b, `kappa sqrt(Q_x / Q) n ** -0.5` for U (its
  input h has std `1 / kappa`; the GRU's reset gate shrinks the gradient reaching U_h, the
  LSTM has `Q_x = Q`), `n` the (batch x time) positions receiving an upstream gradient.

Every scale is folded into the weights (`scale_fwd(scale_bwd(W, weight_grad_scale), s)`)
once per call, outside the recurrence, so the loop is a plain LSTM/GRU and a backend's fused
kernel (cuDNN; JAX's scan GRU) can run it. Folding `s_h` with `scale_fwd` gives the h-path a
backward scale equal to its forward one, as the constraint on that non-cut edge requires;
`kappa` is a plain multiply for the same reason, and so is its inverse on an initial `h`.
"""

import collections
import functools
import math

import keras
import numpy as np
from keras import ops
from keras.src import backend as keras_backend

from keras_unitscale.backend import cudnn_disables_jit
from keras_unitscale.ops.constraints import apply_constraint
from keras_unitscale.ops.linear import _product
from keras_unitscale.ops.scale import leading_size, rsqrt_size, scale_bwd, scale_fwd

RHO = 0.25
"""Mean-field backward gain per step through the recurrent kernel (module docstring)."""

RecurrentScales = collections.namedtuple(
    "RecurrentScales", ["input", "input_grad", "recurrent", "output", "recurrent_weight_grad"]
)
RecurrentScales.__doc__ = """Scales of a unit-scaled LSTM or GRU (Python floats).

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


def _dsig(z):
    return _sig(z) * (1.0 - _sig(z))


def _dtanh(z):
    return 1.0 - np.tanh(z) ** 2


@functools.lru_cache(maxsize=None)
def lstm_moments(forget_bias=0.0):
    """`(kappa, eta2, q, var_c)` of the LSTM's mean-field derivation for a forget-gate bias.

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
    dsig2 = _expect(lambda z: _dsig(z) ** 2)
    dsig_f2 = _expect(lambda z: _dsig(z) ** 2, bf)
    dtanh2 = _expect(lambda z: _dtanh(z) ** 2)
    cell = sig2 * _expect(lambda c: _dtanh(c) ** 2, 0.0, var_c) / (1.0 - forget2)
    q = tanh_c2 * dsig2 + cell * (var_c * dsig_f2 + tanh2 * dsig2 + sig2 * dtanh2)
    eta2 = RHO / (kappa**2 * q)
    return kappa, eta2, q, var_c


def lstm_scales(input_dim, units, forget_bias=0.0, constraint="to_output_scale"):
    """The LSTM's `RecurrentScales` for inputs of size `input_dim` and `units` cells.

    Example:
    >>> from keras_unitscale.ops.recurrent import lstm_scales
    >>> s = lstm_scales(128, 128)
    >>> round(s.output, 2), round(s.input, 3), round(s.recurrent, 3)
    (5.2, 0.081, 0.183)
    """
    kappa, eta2, q, _ = lstm_moments(forget_bias)
    return _scales(input_dim, units, kappa, eta2, q, q, RHO, constraint)


def _gru_terms(eta2):
    sig2 = _expect(lambda z: _sig(z) ** 2)
    dsig2 = _expect(lambda z: _dsig(z) ** 2)
    # The candidate's h-path is gated by r: its pre-activation variance is below one.
    var_a = 1.0 - eta2 * (1.0 - sig2)
    tanh2 = _expect(lambda a: np.tanh(a) ** 2, 0.0, var_a)
    dtanh2 = _expect(lambda a: _dtanh(a) ** 2, 0.0, var_a)
    var_h = sig2 * tanh2 / (1.0 - sig2)  # (1 - z) has the law of z
    kappa = var_h**-0.5
    # Per unit of E[(dL/dh)^2]: update gate (h_{t-1} - tanh(a)), candidate, reset gate.
    update = (var_h + tanh2) * dsig2
    candidate = sig2 * dtanh2
    q_h = update + candidate * (eta2 * dsig2 + sig2)  # through U: U_h sees r * d(a)
    q_x = update + candidate * (1.0 + eta2 * dsig2)  # through W
    return kappa, q_h, q_x, sig2


@functools.lru_cache(maxsize=None)
def gru_moments():
    """`(kappa, eta2, q_x, rho)` of the GRU's mean-field derivation.

    `eta2` solves `eta2 kappa^2 q_h = RHO` (kappa and q_h depend on it through the reset
    gate); `rho = E[z^2] + RHO` is the total backward gain per step, carry included.

    Example:
    >>> from keras_unitscale.ops.recurrent import gru_moments
    >>> kappa, eta2, q_x, rho = gru_moments()
    >>> round(kappa, 2), round(eta2, 2), round(rho, 2)
    (2.74, 0.48, 0.54)
    """
    lo, hi = 0.0, 1.0
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        kappa, q_h, _, _ = _gru_terms(mid)
        lo, hi = (mid, hi) if mid * kappa**2 * q_h < RHO else (lo, mid)
    eta2 = 0.5 * (lo + hi)
    kappa, _, q_x, sig2 = _gru_terms(eta2)
    return kappa, eta2, q_x, sig2 + RHO


def gru_scales(input_dim, units, constraint="to_output_scale"):
    """The GRU's `RecurrentScales` for inputs of size `input_dim` and `units` cells.

    Example:
    >>> from keras_unitscale.ops.recurrent import gru_scales
    >>> s = gru_scales(128, 128)
    >>> round(s.output, 2), round(s.input, 3), round(s.recurrent, 3)
    (2.74, 0.064, 0.167)
    """
    kappa, eta2, q_x, rho = gru_moments()
    q_h = RHO / (eta2 * kappa**2)
    return _scales(input_dim, units, kappa, eta2, q_x, q_h, rho, constraint)


def _scales(input_dim, units, kappa, eta2, q_x, q_h, rho, constraint):
    fwd = ((1.0 - eta2) / input_dim) ** 0.5
    bwd = (units * q_x * kappa**2 / (1.0 - rho)) ** -0.5
    x_fwd, x_bwd = apply_constraint(constraint, fwd, bwd)
    # U's input h has std 1 / kappa, and its output gradient is sqrt(q_h / q_x) times W's
    # (the GRU's reset gate multiplies U_h's; equal for the LSTM).
    u_grad = kappa * (q_x / q_h) ** 0.5
    return RecurrentScales(x_fwd, x_bwd, kappa * (eta2 / units) ** 0.5, kappa, u_grad)


def recurrent_weights(kernel, recurrent_kernel, bias, contributions, scales):
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


def fused_kernel_disables_jit(cell="lstm", unroll=False, use_bias=True):
    """Whether the fused kernel may run here and is one XLA cannot compile (cuDNN on TF).

    Mirrors `keras.layers.LSTM` / `GRU`, which then set `supports_jit = False`.
    """
    return cudnn_disables_jit(cell, unroll, use_bias)


def _lstm_step(kernel, recurrent_kernel, bias, recurrent_dropout_mask):
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


def _gru_step(kernel, recurrent_kernel, bias, recurrent_dropout_mask):
    # `bias` is `[2, 3u]`: input and recurrent rows. With `kernel` None the step input is
    # the precomputed `x_t W + bias[0]`.
    def step(inputs, states):
        h = states[0]
        h_in = h if recurrent_dropout_mask is None else h * recurrent_dropout_mask
        rec = ops.matmul(h_in, recurrent_kernel)
        if bias is not None:
            rec = rec + bias[1]
        if kernel is not None:
            inputs = ops.matmul(inputs, kernel)
            if bias is not None:
                inputs = inputs + bias[0]
        x_z, x_r, x_h = ops.split(inputs, 3, axis=-1)
        h_z, h_r, h_h = ops.split(rec, 3, axis=-1)
        z = ops.sigmoid(x_z + h_z)
        r = ops.sigmoid(x_r + h_r)
        h = z * h + (1.0 - z) * ops.tanh(x_h + r * h_h)
        return h, [h]

    return step


def _lstm_fused(x, states, mask, w, u, b, **kwargs):
    return keras_backend.lstm(
        x, states[0], states[1], mask, kernel=w, recurrent_kernel=u, bias=b,
        activation=keras.activations.tanh, recurrent_activation=keras.activations.sigmoid,
        **kwargs,
    )


def _gru_fused(x, states, mask, w, u, b, **kwargs):
    return keras_backend.gru(
        x, states[0], mask, kernel=w, recurrent_kernel=u, bias=b,
        activation=keras.activations.tanh, recurrent_activation=keras.activations.sigmoid,
        reset_after=True, **kwargs,
    )


def _check_rank(sequences):
    if len(sequences.shape) != 3:
        raise ValueError(
            "`sequences` must have rank 3 (batch, timesteps, features); "
            f"received shape {tuple(sequences.shape)}."
        )


def _run(cell, scales, sequences, initial_state, kernel, recurrent_kernel, bias, mask,
         dropout_mask, recurrent_dropout_mask, return_sequences, go_backwards, unroll,
         zero_output_for_mask, fp8, use_fused):
    step_fn, fused_fn = (_lstm_step, _lstm_fused) if cell == "lstm" else (_gru_step, _gru_fused)
    n = leading_size(sequences, 1 if return_sequences else 2)
    w, u, b = recurrent_weights(kernel, recurrent_kernel, bias, n, scales)
    states = list(initial_state)
    states[0] = states[0] * ops.cast(1.0 / scales.output, states[0].dtype)

    x = sequences
    if dropout_mask is not None:
        x = x * ops.expand_dims(dropout_mask, 1)
    x = scale_bwd(x, scales.input_grad / scales.input)

    result = None
    if use_fused and fp8 is None and recurrent_dropout_mask is None:
        # The fused kernels are given the reversed sequence rather than `go_backwards`:
        # Keras 3.15's JAX cuDNN path flips a backward layer's outputs back into input order,
        # where Keras' own loop (and TensorFlow) return them in processing order.
        fused_x, fused_mask = x, mask
        if go_backwards:
            fused_x = ops.flip(x, axis=1)
            fused_mask = None if mask is None else ops.flip(mask, axis=1)
        try:
            result = fused_fn(
                fused_x, states, fused_mask, w, u, b, return_sequences=return_sequences,
                go_backwards=False, unroll=unroll,
            )
        except NotImplementedError:
            result = None
    if result is None and use_fused is True:
        raise ValueError(
            "`use_cudnn=True` was given, but the fused kernel cannot run here (no GPU, a "
            "mask it does not support, `fp8`, or recurrent dropout). Pass `use_cudnn='auto'`."
        )
    if result is None:
        if fp8 is None:
            # Projecting x_t inside the loop, as Keras does, beats one batched projection on
            # XLA:CPU (the [batch, time, gates] intermediate leaves the cache); see
            # docs/benchmarks.md.
            inputs, step = x, step_fn(w, u, b, recurrent_dropout_mask)
        else:
            # One batched projection outside the loop, so that every cast is outside it too.
            inputs = _product(x, w, fp8)
            step_bias = b
            if b is not None:
                inputs = inputs + (b if cell == "lstm" else b[0])
                step_bias = None if cell == "lstm" else b
            step = step_fn(None, fp8.cast_forward(u), step_bias, recurrent_dropout_mask)
        result = keras_backend.rnn(
            step,
            inputs,
            states,
            go_backwards=go_backwards,
            mask=mask,
            unroll=unroll,
            input_length=sequences.shape[1],
            zero_output_for_mask=zero_output_for_mask,
            return_all_outputs=return_sequences,
        )
    last, outputs, states = result
    k = scales.output
    return last * k, outputs * k, [states[0] * k, *states[1:]]


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
    _check_rank(sequences)
    scales = lstm_scales(
        int(kernel.shape[0]), int(recurrent_kernel.shape[0]), forget_bias, constraint
    )
    return _run(
        "lstm", scales, sequences, initial_state, kernel, recurrent_kernel, bias, mask,
        dropout_mask, recurrent_dropout_mask, return_sequences, go_backwards, unroll,
        zero_output_for_mask, fp8, use_fused,
    )


def gru(
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
    constraint="to_output_scale",
    fp8=None,
    use_fused="auto",
):
    """Runs a unit-scaled GRU (Keras' `reset_after=True` form) over `sequences`.

    Args:
        sequences: unit-scale inputs `[batch, time, d]`.
        initial_state: `[h]`, `[batch, units]`, in output units (as returned).
        kernel, recurrent_kernel: `[d, 3u]`, `[u, 3u]`, gates z, r, candidate.
        bias: `[2, 3u]` (input and recurrent rows, as in `keras.layers.GRU`) or None.
        The other arguments are those of `lstm`.

    Returns:
        `(last_output, outputs, [h])`, in output units.

    Example:
    >>> import numpy as np
    >>> from keras_unitscale import ops as uops
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((64, 16, 32)).astype("float32")
    >>> w, u = rng.standard_normal((32, 48)), rng.standard_normal((16, 48))
    >>> zeros = np.zeros((64, 16), "float32")
    >>> last, seq, (h,) = uops.gru(x, [zeros], w.astype("float32"), u.astype("float32"),
    ...                            return_sequences=True)
    >>> tuple(seq.shape), bool(0.75 < float(np.std(seq)) < 1.33)
    ((64, 16, 16), True)
    """
    _check_rank(sequences)
    scales = gru_scales(int(kernel.shape[0]), int(recurrent_kernel.shape[0]), constraint)
    return _run(
        "gru", scales, sequences, initial_state, kernel, recurrent_kernel, bias, mask,
        dropout_mask, recurrent_dropout_mask, return_sequences, go_backwards, unroll,
        zero_output_for_mask, fp8, use_fused,
    )
