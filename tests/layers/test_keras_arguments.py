"""Every constructor argument of Keras' `Dense`, `Embedding`, `LSTM`, `GRU`,
`MultiHeadAttention`, `LayerNormalization` and `Dropout` on our namesakes: honoured (a
non-default value and its effect) or refused with a `ValueError` that names it and says why.

The arguments are read from the installed Keras (`inspect.signature`) when the tests are
collected: an argument a new Keras adds is a failing case until our layer honours or refuses
it and the table below says which.
"""

import functools
import inspect
import warnings

import keras
import numpy as np
import pytest

import keras_unitscale as ku
from roundtrip import assert_keras_roundtrip
from scale_utils import normal

SEQ = normal((2, 5, 8), seed=3)
IDS = np.array([[1, 2, 0], [3, 4, 0]])
REQUIRED = {
    "Dense": {"units": 4},
    "Embedding": {"input_dim": 6, "output_dim": 8},
    # Unrolled: eager calls reuse the compiled steps (JAX compiles a scan per eager call).
    "LSTM": {"units": 4, "unroll": True},
    "GRU": {"units": 4, "unroll": True},
    "MultiHeadAttention": {"num_heads": 2, "key_dim": 4},
    "LayerNormalization": {},
    "Dropout": {"rate": 0.5},
}
# The weights each Keras argument prefix (`kernel_initializer`, `recurrent_constraint`, ...)
# applies to, by variable name.
_MHA = ("query", "key", "value", "attention_output")
WEIGHTS = {
    "Dense": {"kernel": ["kernel"], "bias": ["bias"]},
    "Embedding": {"embeddings": ["embeddings"]},
    "LSTM": {"kernel": ["kernel"], "recurrent": ["recurrent_kernel"], "bias": ["bias"]},
    "GRU": {"kernel": ["kernel"], "recurrent": ["recurrent_kernel"], "bias": ["bias"]},
    "MultiHeadAttention": {"kernel": [f"{p}_kernel" for p in _MHA],
                           "bias": [f"{p}_bias" for p in _MHA]},
    "LayerNormalization": {"gamma": ["gamma"], "beta": ["beta"]},
    "Dropout": {},
}
_NOT_UNIT = {"bias", "beta", "gamma"}  # zeros / ones by default: nothing to warn about


def _keras_arguments(name):
    parameters = inspect.signature(getattr(keras.layers, name).__init__).parameters
    return {p: v.default for p, v in parameters.items()
            if p != "self" and v.kind not in (v.VAR_KEYWORD, v.VAR_POSITIONAL)}


def _make(name, **kwargs):
    return getattr(ku.layers, name)(**{**REQUIRED[name], **kwargs})


def _build(layer):
    if isinstance(layer, ku.layers.Embedding):
        layer.build()
    elif isinstance(layer, ku.layers.MultiHeadAttention):
        layer.build(SEQ.shape, SEQ.shape)
    elif not isinstance(layer, ku.layers.Dropout):
        layer.build(SEQ.shape)
    return layer


def _call(layer, x=SEQ, **kwargs):
    if isinstance(layer, ku.layers.Embedding):
        return layer(IDS)
    if isinstance(layer, ku.layers.MultiHeadAttention):
        return layer(x, x, **kwargs)
    return layer(x, **kwargs)


def _np(x):
    return keras.ops.convert_to_numpy(x)


@functools.lru_cache(maxsize=None)
def _baseline(name):
    """A default layer and its output on `SEQ` (one call per layer kind, shared)."""
    keras.utils.set_random_seed(0)
    layer = _build(_make(name))
    return layer, _np(_call(layer))


def _like_baseline(name, **kwargs):
    """A layer with `kwargs` and the baseline's weights, built (not called)."""
    layer = _build(_make(name, **kwargs))
    layer.set_weights(_baseline(name)[0].get_weights())
    return layer


def _close(actual, expected):
    np.testing.assert_allclose(_np(actual), expected, rtol=1e-5, atol=1e-6)


def _variables(layer, name, prefix):
    names = WEIGHTS[name][prefix]
    found = [v for v in layer.weights if v.name in names]
    assert len(found) == len(names), (names, [v.name for v in layer.weights])
    return found


def _config_keeps(layer, arg):
    clone = type(layer).from_config(layer.get_config())
    assert clone.get_config()[arg] == layer.get_config()[arg] is not None


# --- Keras' weight arguments: the same check for every layer ----------------------------------
def _initializer(name, prefix, keras_default):
    arg = f"{prefix}_initializer"
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # a unit-RMS initializer: no warning
        layer = _build(_make(name, **{arg: keras.initializers.Constant(1.5)}))
    for v in _variables(layer, name, prefix):
        assert np.all(_np(v.value) == 1.5), v.path
    _config_keeps(layer, arg)
    if prefix not in _NOT_UNIT:  # Keras' own default is far from N(0, 1): warned about
        with pytest.warns(UserWarning, match="_initializer` drew weights of RMS"):
            _build(_make(name, **{arg: keras_default}))


def _regularizer(name, prefix):
    arg = f"{prefix}_regularizer"
    layer = _build(_make(name, **{arg: keras.regularizers.L2(0.5),
                                  f"{prefix}_initializer": keras.initializers.Constant(1.5)}))
    expected = [0.5 * float(np.sum(_np(v.value) ** 2)) for v in _variables(layer, name, prefix)]
    assert sorted(float(_np(p)) for p in layer.losses) == pytest.approx(sorted(expected))
    _config_keeps(layer, arg)


def _constraint(name, prefix):
    arg = f"{prefix}_constraint"
    layer = _build(_make(name, **{arg: keras.constraints.NonNeg(),
                                  f"{prefix}_initializer": keras.initializers.Constant(-1.5)}))
    variables = _variables(layer, name, prefix)
    # A step with zero gradients leaves the weights where they are, then applies constraints.
    keras.optimizers.SGD(0.1).apply([keras.ops.zeros_like(v.value) for v in variables],
                                    variables)
    for v in variables:
        assert np.all(_np(v.value) == 0.0), v.path  # -1.5 clipped by NonNeg
    _config_keeps(layer, arg)


def _activity_regularizer(name):
    layer = _like_baseline(name, activity_regularizer=keras.regularizers.L1(0.25))
    out = _np(keras.tree.flatten(_call(layer))[0])
    assert [float(_np(p)) for p in layer.losses] == pytest.approx(
        [0.25 * float(np.sum(np.abs(out))) / out.shape[0]], rel=1e-5)
    _config_keeps(layer, "activity_regularizer")


# --- Other arguments: a non-default value and its effect --------------------------------------
def _refused(arg, value, why):
    """Refused at construction (`LayerNormalization(axis)` at build, when the rank is known),
    with a message naming the argument and saying why."""
    def check(name):
        with pytest.raises(ValueError) as info:
            _build(_make(name, **{arg: value}))
        message = str(info.value)
        assert f"`{arg}" in message and why in message, message
        assert "Unrecognized keyword" not in message
    return check


def _output_width(arg, value):
    def check(name):
        layer = _make(name, **{arg: value})
        assert _call(layer).shape[-1] == value
    return check


# Shape-only checks draw their weights with `ones` (unit RMS): no random draw to compile.
_ONES = {"Dense": "kernel_initializer", "Embedding": "embeddings_initializer",
         "LSTM": "kernel_initializer", "GRU": "kernel_initializer",
         "MultiHeadAttention": "kernel_initializer"}


def _shape_only(name, **kwargs):
    if name in _ONES:
        kwargs[_ONES[name]] = "ones"
    if name in ("LSTM", "GRU"):
        kwargs["recurrent_initializer"] = "ones"
    return _build(_make(name, **kwargs))


def _no_weight(arg, weight):
    def check(name):
        assert [v for v in _baseline(name)[0].weights if weight in v.name]
        assert not [v for v in _shape_only(name, **{arg: False}).weights if weight in v.name]
    return check


def _dropout_in_training(arg):
    def check(name):
        layer = _like_baseline(name, **{arg: 0.5})
        assert not np.allclose(_np(_call(layer, training=True)), _baseline(name)[1])
        if name == "MultiHeadAttention":  # cheap: inference is the identity's
            _close(_call(layer, training=False), _baseline(name)[1])
    return check


def _seeded(rate_arg):
    def check(name):
        a, b = (_like_baseline(name, **{rate_arg: 0.5, "seed": 3}) for _ in range(2))
        assert np.array_equal(_np(_call(a, training=True)), _np(_call(b, training=True)))
    return check


def _same_output(arg, value):
    def check(name):
        layer = _like_baseline(name, **{arg: value})
        _close(_call(layer), _baseline(name)[1])
        assert layer.get_config()[arg] == value
    return check


def _recurrent_checks(name):
    gates = 4 if name == "LSTM" else 3

    def units(name):
        layer = _shape_only(name, units=3)
        assert tuple(layer.cell.kernel.shape) == (8, 3 * gates)
        assert tuple(layer.compute_output_shape(SEQ.shape)) == (2, 3)

    def sequences(name):
        out = _np(_call(_like_baseline(name, return_sequences=True)))
        assert out.shape == (2, 5, 4)
        _close(out[:, -1], _baseline(name)[1])

    def states(name):
        out = _call(_like_baseline(name, return_state=True))
        assert len(out) == (3 if name == "LSTM" else 2)
        _close(out[0], _baseline(name)[1])

    def backwards(name):
        _close(_call(_like_baseline(name, go_backwards=True), SEQ[:, ::-1]), _baseline(name)[1])

    def stateful(name):
        layer = _like_baseline(name, stateful=True)
        _close(_call(layer), _baseline(name)[1])
        assert not np.allclose(_np(_call(layer)), _baseline(name)[1])  # starts from the state

    checks = {
        "units": units,
        "activation": _refused("activation", "relu", "derived for sigmoid gates"),
        "recurrent_activation": _refused("recurrent_activation", "hard_sigmoid",
                                         "derived for sigmoid gates"),
        "use_bias": _no_weight("use_bias", "bias"),
        "dropout": _dropout_in_training("dropout"),
        "recurrent_dropout": _dropout_in_training("recurrent_dropout"),
        "seed": _seeded("dropout"),
        "return_sequences": sequences,
        "return_state": states,
        "go_backwards": backwards,
        "stateful": stateful,
        "unroll": _same_output("unroll", False),  # the baseline is unrolled
        "use_cudnn": _same_output("use_cudnn", False),
    }
    if name == "LSTM":
        def forget_bias(name):
            bias = _np(_build(_make(name, unit_forget_bias=True)).cell.bias.value)
            assert np.all(bias[4:8] == 1.0) and np.all(np.delete(bias, range(4, 8)) == 0.0)
        checks["unit_forget_bias"] = forget_bias
    else:
        checks["reset_after"] = _refused("reset_after", False, "scale is derived for that form")
    return checks


def _projection_width(arg, value, kernel, width):
    def check(name):
        layer = _shape_only(name, **{arg: value})
        assert getattr(layer, kernel).shape[-1] == width
    return check


def _window(name):
    _, scores = _call(_make(name, sliding_window=2), return_attention_scores=True)
    allowed = np.abs(np.arange(5)[:, None] - np.arange(5)[None]) < 2
    scores = _np(scores)
    assert np.all(scores[..., ~allowed] == 0) and np.all(scores[..., allowed] > 0)


def _flash(name):
    layer = _like_baseline(name, flash_attention=True)
    _close(_call(layer), _baseline(name)[1])
    with pytest.raises(ValueError, match="`flash_attention=True` never materialises"):
        _call(layer, return_attention_scores=True)
    with pytest.raises(ValueError, match="`flash_attention=True` cannot apply dropout"):
        _make(name, flash_attention=True, dropout=0.1)
    _, scores = _call(_like_baseline(name, flash_attention=False), return_attention_scores=True)
    assert scores.shape == (2, 2, 5, 5)


def _table_shape(arg, value, shape):
    def check(name):
        assert tuple(_shape_only(name, **{arg: value}).embeddings.shape) == shape
    return check


def _mask_zero(name):
    assert _np(_make(name, mask_zero=True).compute_mask(IDS)).tolist() == (IDS != 0).tolist()
    assert _make(name).compute_mask(IDS) is None


def _weights(name):
    table = normal((6, 8), seed=5)
    np.testing.assert_array_equal(_np(_make(name, weights=[table]).embeddings.value), table)
    with pytest.warns(UserWarning, match="`weights` drew weights of RMS 0.1"):
        _make(name, weights=0.1 * table / np.sqrt(np.mean(table**2)))


def _axis(name):
    _same_output("axis", 2)(name)
    _refused("axis", 1, "must be the last axis")(name)


def _epsilon(name):
    x = np.array([[0.0, 1.0]], "float32")  # variance 0.25
    _close(_make(name, epsilon=0.75)(x), [[-0.5, 0.5]])  # (x - mean) / sqrt(0.25 + 0.75)


def _rate(name):
    y = _np(_make(name, rate=0.75)(np.ones((64, 64), "float32"), training=True))
    assert set(np.unique(y)) == {0.0, 2.0}  # kept values x (1 - 0.75) ** -0.5
    assert 0.7 < np.mean(y == 0) < 0.8


def _noise_shape(name):
    y = _np(_make(name, noise_shape=(2, 1, 8))(np.ones((2, 5, 8), "float32"), training=True))
    assert np.all(y == y[:, :1]) and np.any(y == 0)  # one mask for every position


def _relu(name):
    assert np.min(_np(_call(_make(name, activation="relu")))) >= 0.0


_LORA = "no LoRA adapters"
_QUANTIZED = "quantised after training"
_ADAPTERS = {
    "lora_rank": _refused("lora_rank", 4, _LORA),
    "lora_alpha": _refused("lora_alpha", 8.0, _LORA),
    "quantization_config": _refused("quantization_config", {"mode": "int8"}, _QUANTIZED),
}
SPECIFIC = {
    "Dense": {"units": _output_width("units", 3), "activation": _relu,
              "use_bias": _no_weight("use_bias", "bias"), **_ADAPTERS},
    "Embedding": {"input_dim": _table_shape("input_dim", 9, (9, 8)),
                  "output_dim": _table_shape("output_dim", 3, (6, 3)),
                  "mask_zero": _mask_zero, "weights": _weights, **_ADAPTERS},
    "LSTM": _recurrent_checks("LSTM"),
    "GRU": _recurrent_checks("GRU"),
    "MultiHeadAttention": {
        "num_heads": _projection_width("num_heads", 3, "query_kernel", 12),
        "key_dim": _projection_width("key_dim", 5, "key_kernel", 10),
        "value_dim": _projection_width("value_dim", 3, "value_kernel", 6),
        "dropout": _dropout_in_training("dropout"),
        "use_bias": _no_weight("use_bias", "bias"),
        "output_shape": _output_width("output_shape", 6),
        "attention_axes": _refused("attention_axes", (1, 2), "along one sequence axis"),
        "sliding_window": _window,
        "flash_attention": _flash,
        "use_gate": _refused("use_gate", True, "scale and gradient rule are not derived"),
        "seed": _seeded("dropout"),
    },
    "LayerNormalization": {"axis": _axis, "epsilon": _epsilon,
                           "center": _no_weight("center", "beta"),
                           "scale": _no_weight("scale", "gamma")},
    "Dropout": {"rate": _rate, "noise_shape": _noise_shape, "seed": _seeded("rate")},
}


def _check_for(name, arg, keras_default):
    if arg in SPECIFIC[name]:
        return SPECIFIC[name][arg]
    if arg == "activity_regularizer":
        return _activity_regularizer
    prefix, _, kind = arg.rpartition("_")
    if prefix in WEIGHTS[name] and kind == "initializer":
        return lambda name: _initializer(name, prefix, keras_default)
    if prefix in WEIGHTS[name] and kind in ("regularizer", "constraint"):
        return lambda name: {"regularizer": _regularizer, "constraint": _constraint}[kind](
            name, prefix)
    return None


@pytest.mark.parametrize(
    "name,arg", [(name, arg) for name in REQUIRED for arg in _keras_arguments(name)]
)
def test_every_keras_argument_is_honoured_or_refused_with_a_reason(name, arg):
    check = _check_for(name, arg, _keras_arguments(name)[arg])
    assert check is not None, (
        f"keras.layers.{name}({arg}=...) is neither honoured nor refused in this table: make "
        f"keras_unitscale.layers.{name} honour it (or refuse it, saying why) and add a check."
    )
    keras.utils.set_random_seed(0)
    check(name)


def test_bad_weight_arguments_name_themselves():
    with pytest.raises(ValueError, match="`kernel_regularizer` must be a Keras regularizer"):
        ku.layers.Dense(3, kernel_regularizer="l7")
    with pytest.raises(ValueError, match="`embeddings_constraint` must be a Keras constraint"):
        ku.layers.Embedding(5, 3, embeddings_constraint="sometimes")
    with pytest.raises(ValueError, match="`recurrent_regularizer` must be a Keras regularizer"):
        ku.layers.LSTM(4, recurrent_regularizer="l7")


def test_layers_with_weight_arguments_round_trip(tmp_path):
    layer = ku.layers.Dense(3, kernel_regularizer="l2", bias_constraint="non_neg")
    assert_keras_roundtrip(layer, normal((2, 5)), tmp_path)
