import keras
import numpy as np
import pytest

import keras_unitscale as ku
from keras_unitscale.ops.recurrent import lstm_scales
from roundtrip import assert_config_roundtrip, assert_keras_roundtrip
from scale_utils import layer_stds, normal, one_step_recurrent_grad_ratio


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _constrained_input_grad(input_dim, units):
    """The input-gradient std under the default `to_output_scale` constraint: the
    unconstrained rule makes it unit, the constraint multiplies it by forward / backward."""
    free = lstm_scales(input_dim, units, constraint=None)
    return free.input / free.input_grad


# Bands. The output is unit by the derivation (within 0.1, a 20% error in kappa fails).
# The input gradient is compared with its derived value within 12% (measured within 7% at
# lengths 8 to 128; a 20% error in the x-path scale fails). The kernel's gradient is unit
# (its input is independent from step to step, where the mean field is exact): within 0.1
# (measured 0.97 to 1.08), so a 20% error in the weight-gradient factor omega fails. U's and
# the bias's gradients sum terms correlated along time, which the mean field drops; they are
# checked relative to the kernel's, below.


def _gaussian_mean(fn, mean=0.0):
    # E[fn(z)], z ~ N(mean, 1), by Gauss-Hermite quadrature (independent of ops/).
    t, w = np.polynomial.hermite_e.hermegauss(80)
    return float(np.sum(w * fn(mean + t)) / np.sqrt(2.0 * np.pi))


def _bias_over_kernel(length):
    """The bias gradient's std over the kernel's, `sqrt(tau)`, for a unit gradient on every
    one of `length` outputs, from the carry of the cell's gradient (a model independent of
    the code, docs/lstm.md): `dc_t = ... + f dc_{t+1}` correlates the cell gradient at lag `l`
    by `m^l`, `m = E[sig]` (forget bias 0). The candidate's gradient `dc i tanh'` keeps a share
    `a_c = (E[sig] E[tanh'])^2 / (E[sig^2] E[tanh'^2])` of it, the forget gate's `dc c sig'`
    (c carries too) `a_f m^(2l)`, `a_f = E[sig']^2 / E[sig'^2]`; the input and output
    gates' gradients have zero-mean factors (`tanh(z_c)`, the upstream) and none. The kernel's
    gradient sums `x_t dz_t` over independent `x_t`: no correlation. Each gate's share of
    the gradient is its mean-field variance (ops/recurrent_scales.py's derivation, rebuilt
    here), with `var_c` from the forward pass."""
    sig = lambda z: 1.0 / (1.0 + np.exp(-z))  # noqa: E731
    dsig = lambda z: sig(z) * (1.0 - sig(z))  # noqa: E731
    dtanh = lambda z: 1.0 - np.tanh(z) ** 2  # noqa: E731
    sig2, tanh2 = _gaussian_mean(lambda z: sig(z) ** 2), _gaussian_mean(lambda z: np.tanh(z) ** 2)
    dsig2, dtanh2 = _gaussian_mean(lambda z: dsig(z) ** 2), _gaussian_mean(lambda z: dtanh(z) ** 2)
    var_c = sig2 * tanh2 / (1.0 - sig2)
    on_c = lambda fn: _gaussian_mean(lambda z: fn(np.sqrt(var_c) * z))  # noqa: E731
    cell = sig2 * on_c(lambda c: dtanh(c) ** 2) / (1.0 - sig2)  # E[dc^2] per E[dh^2]
    shares = {
        "o": on_c(lambda c: np.tanh(c) ** 2) * dsig2,
        "i": cell * tanh2 * dsig2,
        "c": cell * sig2 * dtanh2,
        "f": cell * var_c * dsig2,
    }
    m = _gaussian_mean(sig)
    a_c = (m * _gaussian_mean(dtanh)) ** 2 / (sig2 * dtanh2)
    a_f = _gaussian_mean(dsig) ** 2 / dsig2
    lag = np.arange(1, length)
    tau_c = 1 + 2 * np.sum((1 - lag / length) * a_c * m**lag)
    tau_f = 1 + 2 * np.sum((1 - lag / length) * a_f * m ** (2 * lag))
    tau = (shares["o"] + shares["i"] + shares["c"] * tau_c + shares["f"] * tau_f) / sum(
        shares.values()
    )
    return tau**0.5


@pytest.mark.parametrize("length", [8, 32, 128])
def test_lstm_is_unit_scaled_at_initialisation(length):
    """Output, input gradient and kernel gradient as in the bands above. U's gradient over
    W's: one at one step (test_one_step_recurrent_kernel_grad_matches_the_kernel_grad), and
    its input h carries along time, which only adds: within [0.9, 1.4] (measured 1.0 at 8
    steps to 1.24 at 128). The bias's over the kernel's: the carry model's `sqrt(tau)` (1.34
    at 8 steps, 1.43 at 128) within 12% (measured within 6%), which a 20% error in the
    bias's factor fails."""
    layer = ku.layers.LSTM(128, return_sequences=True)
    out, (gx,), weights = layer_stds(layer, normal((64, length, 128)))
    assert abs(out - 1) <= 0.1, f"output std {out:.3f}"
    want = _constrained_input_grad(128, 128)
    assert abs(gx / want - 1) <= 0.12, f"input grad std {gx:.3f}, derived {want:.3f}"
    grads = {path.split("/")[-1]: s for path, s in weights.items()}
    assert len(grads) == 3
    w, u, b = grads["kernel"], grads["recurrent_kernel"], grads["bias"]
    assert abs(w - 1) <= 0.1, f"kernel grad std {w:.3f}"
    assert 0.9 <= u / w <= 1.4, f"recurrent kernel / kernel grad std {u / w:.3f}"
    model = _bias_over_kernel(length)
    assert abs(b / w / model - 1) <= 0.12, f"bias / kernel grad std {b / w:.3f}, model {model:.3f}"


def test_last_output_only_scales_weight_grads_by_batch():
    """Only the last output receives a gradient: `n` is the batch, and the kernel's gradient
    is unit as with every output returned (measured 1.05 to 1.07). The gradient reaches the
    earlier steps through the recurrence, where the time correlations only add to U's and
    the bias's: each within [0.9, 1.8] times the kernel's (measured 1.26 to 1.31 and 1.40
    to 1.58)."""
    layer = ku.layers.LSTM(64)
    out, _, weights = layer_stds(layer, normal((64, 16, 64)))
    assert abs(out - 1) <= 0.1, f"output std {out:.3f}"
    grads = {path.split("/")[-1]: s for path, s in weights.items()}
    w = grads["kernel"]
    assert abs(w - 1) <= 0.1, f"kernel grad std {w:.3f}"
    for name in ("recurrent_kernel", "bias"):
        assert 0.9 <= grads[name] / w <= 1.8, f"{name} / kernel grad std {grads[name] / w:.3f}"


def test_lstm_is_keras_lstm_with_scaled_weights():
    x = normal((2, 6, 3))
    ours = ku.layers.LSTM(4, return_sequences=True, unit_forget_bias=True)
    ours.build(x.shape)
    kernel, recurrent, bias = [_np(w) for w in ours.weights[:3]]
    assert np.all(bias[4:8] == 1) and np.all(bias[:4] == 0) and np.all(bias[8:] == 0)
    s = lstm_scales(3, 4, forget_bias=1.0)
    plain = keras.layers.LSTM(4, return_sequences=True)
    plain.build(x.shape)
    plain.set_weights([kernel * s.input, recurrent * s.recurrent, bias])
    np.testing.assert_allclose(_np(ours(x)), s.output * _np(plain(x)), rtol=1e-5, atol=1e-5)


def test_masked_equals_unpadded():
    x = normal((2, 6, 3))
    mask = np.array([[True] * 4 + [False] * 2, [True] * 6])
    x[0, 4:] = 0.0
    layer = ku.layers.LSTM(4, return_sequences=True, return_state=True)
    seq, h, c = layer(x, mask=mask)
    seq_0, h_0, c_0 = layer(x[:1, :4])
    np.testing.assert_allclose(_np(seq)[0, :4], _np(seq_0)[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(_np(h)[0], _np(h_0)[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(_np(c)[0], _np(c_0)[0], rtol=1e-5, atol=1e-6)


def test_mask_from_an_embedding():
    # Row 0 is row 1 cut after three tokens: with the mask, its outputs stop changing there.
    ids = np.array([[3, 1, 4, 0, 0], [3, 1, 4, 9, 9]], "int32")
    model = keras.Sequential(
        [
            keras.Input((5,), dtype="int32"),
            ku.layers.Embedding(10, 3, mask_zero=True),
            ku.layers.LSTM(4, return_sequences=True),
        ]
    )
    seq = _np(model(ids))
    for t in (3, 4):
        np.testing.assert_allclose(seq[0, t], seq[1, 2], rtol=1e-5, atol=1e-6)
    assert not np.allclose(seq[1, 4], seq[1, 2])


def test_return_sequences_and_state_shapes():
    x = normal((2, 5, 3))
    assert ku.layers.LSTM(4)(x).shape == (2, 4)
    assert ku.layers.LSTM(4, return_sequences=True)(x).shape == (2, 5, 4)
    out, h, c = ku.layers.LSTM(4, return_state=True)(x)
    assert out.shape == h.shape == c.shape == (2, 4)
    np.testing.assert_allclose(_np(out), _np(h))  # h is returned in output units
    seq, h, c = ku.layers.LSTM(4, return_sequences=True, return_state=True)(x)
    np.testing.assert_allclose(_np(seq)[:, -1], _np(h))


def test_go_backwards_equals_reversed_input():
    x = normal((2, 6, 3))
    fwd = ku.layers.LSTM(4, return_sequences=True)
    fwd.build(x.shape)
    bwd = ku.layers.LSTM(4, return_sequences=True, go_backwards=True)
    bwd.build(x.shape)
    bwd.set_weights(fwd.get_weights())
    np.testing.assert_allclose(_np(bwd(x)), _np(fwd(x[:, ::-1])), rtol=1e-5, atol=1e-6)


def test_initial_state_continues_a_sequence():
    x = normal((2, 6, 3))
    layer = ku.layers.LSTM(4, return_sequences=True, return_state=True)
    whole, _, _ = layer(x)
    first, h, c = layer(x[:, :3])
    rest, _, _ = layer(x[:, 3:], initial_state=[h, c])
    np.testing.assert_allclose(_np(rest), _np(whole)[:, 3:], rtol=1e-5, atol=1e-6)


def test_stateful_carries_state_between_calls():
    x = normal((2, 6, 3))
    plain = ku.layers.LSTM(4)
    plain.build(x.shape)
    layer = ku.layers.LSTM(4, stateful=True)
    layer.build(x.shape)
    layer.set_weights(plain.get_weights())
    layer(x[:, :3])
    np.testing.assert_allclose(_np(layer(x[:, 3:])), _np(plain(x)), rtol=1e-5, atol=1e-6)
    layer.reset_state()
    assert all(not np.any(_np(v)) for v in layer.states)


def test_bidirectional(tmp_path):
    x = normal((2, 5, 3))
    bi = keras.layers.Bidirectional(ku.layers.LSTM(4, return_sequences=True))
    y = bi(x)
    assert y.shape == (2, 5, 8)
    assert isinstance(bi.backward_layer, ku.layers.LSTM) and bi.backward_layer.go_backwards
    fwd = ku.layers.LSTM(4, return_sequences=True)
    fwd.build(x.shape)
    fwd.set_weights(bi.forward_layer.get_weights())
    np.testing.assert_allclose(_np(y)[..., :4], _np(fwd(x)), rtol=1e-5, atol=1e-6)
    assert_keras_roundtrip(
        keras.layers.Bidirectional(ku.layers.LSTM(4, return_sequences=True)), x, tmp_path
    )


def test_dropout_only_in_training():
    x = normal((64, 10, 32))
    layer = ku.layers.LSTM(32, dropout=0.5, recurrent_dropout=0.3, seed=1)
    y = _np(layer(x, training=True))
    assert not np.allclose(y, _np(layer(x, training=False)))
    assert 0.75 <= float(np.std(y)) <= 1.33


def test_fp8_attribute_is_used():
    class Casts:
        seen = 0

        def cast_forward(self, t):
            Casts.seen += 1
            return t

        def cast_gradient(self, t):
            return t

    x = normal((2, 5, 3))
    layer = ku.layers.LSTM(4)
    expected = _np(layer(x))
    layer.fp8 = Casts()
    np.testing.assert_allclose(_np(layer(x)), expected, rtol=1e-5, atol=1e-6)
    assert Casts.seen >= 3


def test_roundtrips(tmp_path):
    layer = ku.layers.LSTM(
        5, dropout=0.1, recurrent_dropout=0.2, seed=3, unit_forget_bias=True,
        constraint="gmean", return_sequences=True, go_backwards=True, name="rnn",
    )
    clone = assert_config_roundtrip(layer)
    assert clone.units == 5 and clone.constraint == "gmean" and clone.unit_forget_bias
    assert_keras_roundtrip(layer, normal((2, 6, 3)), tmp_path)


def test_fit_with_jit_compile_lowers_the_loss():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((128, 12, 4)).astype("float32")
    y = (x[:, :, 0].sum(axis=1) > 0).astype("float32")[:, None]
    model = keras.Sequential(
        [keras.Input((12, 4)), ku.layers.LSTM(16), ku.layers.Dense(1, readout=True)]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(0.01),
        loss=keras.losses.BinaryCrossentropy(from_logits=True),
        jit_compile=True,
    )
    history = model.fit(x, y, batch_size=32, epochs=8, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < 0.8 * losses[0], losses


@pytest.mark.parametrize("units", [0, -2, 3.5, None])
def test_bad_units(units):
    with pytest.raises(ValueError, match="`units` must be a positive integer"):
        ku.layers.LSTM(units)


@pytest.mark.parametrize("name", ["dropout", "recurrent_dropout"])
@pytest.mark.parametrize("rate", [-0.1, 1.0, "0.5"])
def test_bad_dropout(name, rate):
    with pytest.raises(ValueError, match=f"`{name}` must be a float in \\[0, 1\\)"):
        ku.layers.LSTM(4, **{name: rate})


def test_bad_constraint_and_use_cudnn():
    with pytest.raises(ValueError, match="`constraint` must be one of"):
        ku.layers.LSTM(4, constraint="unit")
    with pytest.raises(ValueError, match="`use_cudnn` must be one of"):
        ku.layers.LSTM(4, use_cudnn="yes")


def test_bad_inputs():
    with pytest.raises(ValueError, match="`sequences` must have rank 3"):
        ku.layers.LSTM(4)(normal((2, 3)))
    layer = ku.layers.LSTM(4)
    layer(normal((2, 3, 5)))
    with pytest.raises(ValueError, match="`sequences` must have rank 3"):
        layer(normal((2, 3, 5, 1)))
    with pytest.raises(ValueError, match="`sequences` must be a floating-point tensor"):
        ku.layers.LSTM(4)(np.ones((2, 3, 5), "int32"))


def test_one_step_recurrent_kernel_grad_matches_the_kernel_grad():
    """The layer's weight-gradient factors, on one step from a warmed-up state (32 steps of
    the layer itself): the recurrent kernel's gradient has the kernel's std, as the
    derivation's U factor promises (it undoes h's std `1 / kappa`). Over
    long sequences the two drift apart by the time correlation the mean field drops
    (tests/ops/test_recurrent.py); on one step they agree within 5%, so a 20% error in U's
    factor fails the 10% band."""
    ratio = one_step_recurrent_grad_ratio(ku.layers.LSTM)
    assert abs(ratio - 1) <= 0.1, f"recurrent kernel / kernel grad std {ratio:.3f}"
