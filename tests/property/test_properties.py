"""Property-based tests (hypothesis) of the ops, the layers' checks and the input checks, over
shapes, dtypes, masks and values: small sizes drawn from a few choices (each new shape is a
new compile on JAX), a fixed derandomised search, on both backends."""

import math

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keras_unitscale import _validation as check
from keras_unitscale import ops as uops
from keras_unitscale.models.task_inputs import check_model_inputs

SETTINGS = settings(max_examples=12, deadline=None, derandomize=True, database=None)
SIZES = st.sampled_from([1, 3, 8])


def _compiled(fn):
    """On JAX, `fn` as one compiled program per input shape: cheaper than compiling each op
    of an eager call separately. TensorFlow runs it eagerly (no compile per shape)."""
    if keras.backend.backend() == "jax":
        import jax

        return jax.jit(fn)
    return fn


_linear = _compiled(lambda x, w: uops.linear(x, w))
_matmul = _compiled(lambda a, b: uops.matmul(a, b))
_softmax = _compiled(lambda x: uops.softmax(x))
_cross_entropy = _compiled(lambda labels, logits: uops.per_token_cross_entropy(labels, logits))
_attention = _compiled(lambda q, k, v, m: uops.dot_product_attention(q, k, v, mask=m))


def _np(x):
    return keras.ops.convert_to_numpy(x).astype("float64")


def _normal(seed, shape, dtype="float32"):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


@SETTINGS
@given(batch=SIZES, fan_in=SIZES, units=SIZES, dtype=st.sampled_from(["float32", "float16"]),
       seed=st.integers(0, 2**16))
def test_linear_shape_dtype_and_scale(batch, fan_in, units, dtype, seed):
    x, w = _normal(seed, (batch, fan_in), dtype), _normal(seed + 1, (fan_in, units), dtype)
    y = _linear(x, w)
    assert tuple(y.shape) == (batch, units)
    assert keras.backend.standardize_dtype(y.dtype) == dtype
    # Unit scaling divides the plain product by sqrt(fan_in), exactly.
    expected = x.astype("float64") @ w.astype("float64") / math.sqrt(fan_in)
    tolerance = 1e-5 if dtype == "float32" else 1e-2
    np.testing.assert_allclose(_np(y), expected, rtol=tolerance, atol=tolerance * 4)


@SETTINGS
@given(rows=SIZES, inner=SIZES, cols=SIZES, seed=st.integers(0, 2**16))
def test_matmul_is_finite_and_scaled_by_the_inner_size(rows, inner, cols, seed):
    a, b = _normal(seed, (2, rows, inner)), _normal(seed + 1, (2, inner, cols))
    y = _np(_matmul(a, b))
    assert y.shape == (2, rows, cols) and np.all(np.isfinite(y))
    np.testing.assert_allclose(y, a @ b / math.sqrt(inner), rtol=1e-5, atol=1e-5)


@settings(max_examples=8, deadline=None, derandomize=True, database=None)
@given(real=st.data(), seed=st.integers(0, 2**16))
def test_masked_attention_ignores_padding_of_any_length(real, seed):
    """Keys past each row's real length change nothing, whatever they hold: the output on
    the real queries equals attention over the unpadded keys alone."""
    length = 4
    lengths = [real.draw(st.integers(1, length)) for _ in range(2)]
    q, k, v = (_normal(seed + i, (2, length, 2, 4)) for i in range(3))
    mask = np.arange(length)[None, None, :] < np.array(lengths)[:, None, None]  # [b, 1, S]
    noisy = [t.copy() for t in (k, v)]
    for row, n in enumerate(lengths):
        for t in noisy:
            t[row, n:] = 1e3 * _normal(seed + 9, t[row, n:].shape)
    out = _np(_attention(q, k, v, mask))
    out_noisy = _np(_attention(q, *noisy, mask))
    np.testing.assert_allclose(out, out_noisy, rtol=1e-5, atol=1e-5)
    n = lengths[0]
    alone = _np(_attention(q[:1], k[:1, :n], v[:1, :n], np.ones((1, 1, n), bool)))
    np.testing.assert_allclose(out[:1], alone, rtol=1e-4, atol=1e-5)



@SETTINGS
@given(d=SIZES, shift=st.floats(-30, 30), seed=st.integers(0, 2**16))
def test_softmax_sums_to_its_scale_and_ignores_shifts(d, shift, seed):
    x = _normal(seed, (3, d))
    y = _np(_softmax(x))
    forward, _ = uops.apply_constraint("to_output_scale", *_softmax_scales(d))
    np.testing.assert_allclose(y.sum(-1), forward, rtol=1e-5)
    assert np.all(y >= 0)
    np.testing.assert_allclose(_np(_softmax(x + np.float32(shift))), y, rtol=1e-4,
                               atol=1e-5)


def _softmax_scales(d):
    from keras_unitscale.ops.softmax import softmax_scales

    return softmax_scales(d)


@SETTINGS
@given(vocab=st.sampled_from([2, 3, 7]), shift=st.floats(-20, 20), seed=st.integers(0, 2**16))
def test_cross_entropy_is_minus_log_softmax_and_shift_invariant(vocab, shift, seed):
    logits = _normal(seed, (4, vocab))
    labels = np.random.default_rng(seed).integers(0, vocab, size=(4,))
    loss = _np(_cross_entropy(labels, logits))
    z = logits.astype("float64")
    expected = np.log(np.exp(z).sum(-1)) - z[np.arange(4), labels]
    np.testing.assert_allclose(loss, expected, rtol=1e-5, atol=1e-5)
    assert np.all(loss >= 0)
    shifted = _np(_cross_entropy(labels, logits + np.float32(shift)))
    np.testing.assert_allclose(shifted, loss, rtol=1e-4, atol=1e-4)


# The checks: they refuse exactly what is out of range ----------------------------------------
@settings(max_examples=40, deadline=None, derandomize=True, database=None)
@given(value=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 5),
                       st.booleans(), st.none(), st.just("1")))
def test_number_checks_accept_exactly_their_range(value):
    real = isinstance(value, (int, float)) and not isinstance(value, bool)
    cases = [
        (check.positive_number, real and 0 < value < math.inf),
        (check.non_negative_number, real and 0 <= value < math.inf),
        (check.finite_number, real and math.isfinite(value)),
        (check.probability, real and 0 <= value < 1),
        (check.open_fraction, real and 0 < value < 1),
        (check.positive_int, isinstance(value, int) and not isinstance(value, bool)
         and value > 0),
    ]
    for function, valid in cases:
        if valid:
            assert function(value, "arg") == value
        else:
            with pytest.raises(ValueError, match="`arg`"):
                function(value, "arg")


class _Backbone:
    """What `check_model_inputs` reads of a backbone: its inputs, vocabulary and positions."""

    vocabulary_size = 10
    max_sequence_length = 6
    input = {"token_ids": keras.KerasTensor((None, None), "int32"),
             "padding_mask": keras.KerasTensor((None, None), "int32")}


@settings(max_examples=40, deadline=None, derandomize=True, database=None)
@given(batch=st.integers(1, 3), length=st.integers(1, 8), mask_length=st.integers(1, 8),
       low=st.integers(-2, 9), high=st.integers(0, 12),
       dtype=st.sampled_from(["int32", "int64", "float32"]))
def test_model_inputs_are_refused_exactly_when_wrong(batch, length, mask_length, low, high,
                                                     dtype):
    ids = np.linspace(min(low, high), high, batch * length).round().reshape(batch, length)
    x = {"token_ids": ids.astype(dtype), "padding_mask": np.ones((batch, mask_length), "int32")}
    reasons = {
        "dtype": dtype == "float32",
        "range": ids.min() < 0 or ids.max() >= 10,
        "mask": mask_length != length,
        "length": length > 6,
    }
    if not any(reasons.values()):
        check_model_inputs(_Backbone(), x, "x")
        return
    with pytest.raises(ValueError, match=r'x\["(token_ids|padding_mask)"\]'):
        check_model_inputs(_Backbone(), x, "x")
