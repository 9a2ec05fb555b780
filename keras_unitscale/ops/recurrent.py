"""Unit-scaled recurrent cells (LSTM, GRU) and the one sequence op that runs them.

LSTM (Keras gate order i, f, c, o): `z_t = s_x x_t W + s_h h_{t-1} U + b`,
`c_t = sig(z_f) c_{t-1} + sig(z_i) tanh(z_c)`, `h_t = sig(z_o) tanh(c_t)`, output `kappa h_t`.
GRU (Keras' `reset_after=True`, gates z, r, candidate): `h_t = z h_{t-1} + (1 - z) tanh(a)`,
`a = s_x x_t W_h + r (s_h h_{t-1} U_h + b_rec)`, output `kappa h_t`. Weights are N(0, 1),
biases zero (the LSTM's forget block may start at one).

The scales come from a mean-field derivation, in `keras_unitscale.ops.recurrent_scales`
(re-exported here; in full, with measurements, in docs/lstm.md).

Every scale is folded into the weights (`scale_fwd(scale_bwd(W, weight_grad_scale), s)`)
once per call, outside the recurrence, so the loop is a plain LSTM/GRU and a backend's fused
kernel (cuDNN; JAX's scan GRU) can run it. Folding `s_h` with `scale_fwd` gives the h-path a
backward scale equal to its forward one, as the constraint on that non-cut edge requires;
`kappa` is a plain multiply for the same reason, and so is its inverse on an initial `h`.

One op, `run_sequence`, runs either cell; a `Cell` says what differs (its step, its fused
kernel, how its bias splits between the input projection and the step). `lstm` and `gru` are
the public entry points: they derive the cell's scales and call it.
"""

import collections

from keras import ops

from keras_unitscale.backend import cudnn_disables_jit, fused_rnn, rnn
from keras_unitscale.ops.linear import _product
from keras_unitscale.ops.recurrent_scales import (  # noqa: F401  (re-exported)
    RHO,
    RecurrentScales,
    gru_moments,
    gru_scales,
    lstm_moments,
    lstm_scales,
)
from keras_unitscale.ops.scale import leading_size, rsqrt_size, scale_bwd, scale_fwd


def recurrent_weights(kernel, recurrent_kernel, bias, contributions, scales):
    """Effective `(kernel, recurrent_kernel, bias)`: the scales folded into the weights.

    `contributions` is the number of (batch x time) positions receiving an upstream gradient
    (an int or a scalar tensor, see `leading_size`); every weight gradient is scaled by
    `scales.weight_grad * contributions ** -0.5`, U's also by `scales.recurrent_weight_grad`.
    Computed once per call, outside the loop.
    """
    g = rsqrt_size(contributions)
    g = g * scales.weight_grad
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


Cell = collections.namedtuple("Cell", ["name", "step", "split_bias"])
Cell.__doc__ = """What `run_sequence` needs to know of a recurrent cell.

`name`: `"lstm"` or `"gru"` (the backend's fused kernel of that name); `step(kernel,
recurrent_kernel, bias, recurrent_dropout_mask)`: the step function of Keras' loop (with
`kernel` None, its input is the precomputed `x_t W` plus the input bias); `split_bias(bias)`:
`(input_bias, step_bias)` for that precomputed form (the input projection's bias, and what
the step still adds).
"""

LSTM_CELL = Cell("lstm", _lstm_step, lambda bias: (bias, None))
GRU_CELL = Cell("gru", _gru_step, lambda bias: (bias[0], bias))  # bias rows: input, recurrent


def _check_rank(sequences):
    if len(sequences.shape) != 3:
        raise ValueError(
            "`sequences` must have rank 3 (batch, timesteps, features); "
            f"received shape {tuple(sequences.shape)}."
        )


def run_sequence(
    cell,
    scales,
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
    fp8=None,
    use_fused="auto",
):
    """Runs a `Cell` with its `RecurrentScales` over `sequences`; the arguments are those of
    `lstm`, and so is the result."""
    _check_rank(sequences)
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
            result = fused_rnn(
                cell.name, fused_x, states, fused_mask, w, u, b,
                return_sequences=return_sequences, go_backwards=False, unroll=unroll,
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
            inputs, step = x, cell.step(w, u, b, recurrent_dropout_mask)
        else:
            # One batched projection outside the loop, so that every cast is outside it too.
            inputs = _product(x, w, fp8)
            step_bias = b
            if b is not None:
                input_bias, step_bias = cell.split_bias(b)
                inputs = inputs + input_bias
            step = cell.step(None, fp8.cast_forward(u), step_bias, recurrent_dropout_mask)
        result = rnn(
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
    *,
    forget_bias=0.0,
    constraint="to_output_scale",
    **options,
):
    """Runs a unit-scaled LSTM over `sequences: [batch, time, d]`.

    Args:
        sequences: unit-scale inputs.
        initial_state: `[h, c]`, each `[batch, units]`; `h` in output units (as returned).
        kernel, recurrent_kernel, bias: `[d, 4u]`, `[u, 4u]`, `[4u]` or None; gates i, f, c, o.
        mask: optional `[batch, time]` boolean mask (masked steps carry the state over).
        forget_bias: the forget-gate bias at initialisation (enters the derivation).
        constraint: ties the input path's forward and input-gradient scales.
        **options: the loop's options (`run_sequence`'s keywords), all of them optional:
            `dropout_mask`, `recurrent_dropout_mask`: `[batch, d]` / `[batch, u]` masks
            already unit-scaled (see `keras_unitscale.ops.dropout`), shared over time;
            `return_sequences`, `go_backwards`, `unroll`, `zero_output_for_mask`: as in
            `keras.layers.RNN`;
            `fp8`: an FP8 simulation (see `keras_unitscale.ops.linear`). With it, the input
            projection is one batched matmul outside the loop, with all of its casts there,
            and the recurrent kernel is cast once per call;
            `use_fused`: `"auto"` (default) tries the backend's fused kernel, `True` requires
            it, `False` never uses it. It runs the same maths; it is skipped with `fp8` or
            recurrent dropout.

    Returns:
        `(last_output, outputs, [h, c])` as Keras' recurrent loop does, in output units.

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
    scales = lstm_scales(
        int(kernel.shape[0]), int(recurrent_kernel.shape[0]), forget_bias, constraint
    )
    return run_sequence(
        LSTM_CELL, scales, sequences, initial_state, kernel, recurrent_kernel, bias, mask,
        **options,
    )


def gru(
    sequences,
    initial_state,
    kernel,
    recurrent_kernel,
    bias=None,
    mask=None,
    *,
    constraint="to_output_scale",
    **options,
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
    scales = gru_scales(int(kernel.shape[0]), int(recurrent_kernel.shape[0]), constraint)
    return run_sequence(
        GRU_CELL, scales, sequences, initial_state, kernel, recurrent_kernel, bias, mask,
        **options,
    )
