import numpy as np
import pytest

import keras_unitscale as ku
from roundtrip import assert_config_roundtrip, assert_keras_roundtrip
from scale_utils import assert_unit, layer_stds, normal


def test_dropout_training_is_unit_and_inference_is_identity():
    layer = ku.layers.Dropout(0.3, seed=1)
    out, (gx,), _ = layer_stds(layer, normal((256, 1024)), training=True)
    assert_unit(out, "output", tol=0.02)
    assert_unit(gx, "grad", tol=0.02)
    x = normal((4, 4))
    np.testing.assert_array_equal(np.asarray(layer(x)), x)


def test_dropout_roundtrip(tmp_path):
    layer = ku.layers.Dropout(0.2, seed=3)
    assert_config_roundtrip(layer)
    assert_keras_roundtrip(layer, normal((2, 5)), tmp_path)


def test_bad_rate():
    with pytest.raises(ValueError, match="`rate` must be a float"):
        ku.layers.Dropout(1.5)


@pytest.mark.parametrize("rate", [0.1, 0.3, 0.5])
def test_dropout_drops_the_rate_and_rescales_the_rest(rate):
    # A Dropout that never drops, or drops without the unit-scaled rescaling, fails here:
    # the dropped fraction is within 4 binomial standard errors of the rate, and every kept
    # value is x / sqrt(1 - rate) exactly.
    x = normal((256, 1024), seed=2) + 10.0  # no zeros of its own
    y = np.asarray(ku.layers.Dropout(rate, seed=4)(x, training=True))
    dropped = y == 0
    n = dropped.size
    assert abs(dropped.mean() - rate) < 4 * (rate * (1 - rate) / n) ** 0.5, dropped.mean()
    np.testing.assert_allclose(y[~dropped], x[~dropped] / (1 - rate) ** 0.5, rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(ku.layers.Dropout(rate)(x, training=False)), x)


def _same_weights(make, rate, *inputs, **call):
    """The layer with dropout `rate` and a copy without dropout sharing its weights."""
    layer, plain = make(rate), make(0.0)
    layer(*inputs, **call)
    plain(*inputs, **call)
    plain.set_weights(layer.get_weights())
    return layer, plain


LAYERS = {
    "attention": (lambda r: ku.layers.MultiHeadAttention(2, 8, dropout=r, seed=1), 2),
    "mlp": (lambda r: ku.layers.MLP(32, dropout=r), 1),
    "encoder block": (lambda r: ku.layers.TransformerEncoderBlock(2, 32, dropout=r, seed=1), 1),
    "decoder block": (lambda r: ku.layers.TransformerDecoderBlock(2, 32, dropout=r, seed=1), 1),
}


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_dropout_inside_layers_is_active_in_training_only(name):
    make, arity = LAYERS[name]
    x = normal((4, 6, 16), seed=3)
    layer, plain = _same_weights(make, 0.5, *([x] * arity))
    reference = np.asarray(plain(*([x] * arity)))
    np.testing.assert_allclose(np.asarray(layer(*([x] * arity), training=False)), reference,
                               rtol=1e-6, atol=1e-6)
    trained = [np.asarray(layer(*([x] * arity), training=True)) for _ in range(2)]
    for out in trained:
        assert np.mean(np.abs(out - reference) > 1e-4) > 0.2, name
    assert not np.allclose(trained[0], trained[1]), f"{name}: the same mask twice"


@pytest.mark.parametrize("name", ["encoder block", "decoder block", "mlp"])
def test_every_dropout_inside_a_block_drops_in_training_only(name):
    # The block's output changes if any one dropout is active, so look at each Dropout
    # sublayer: in training every one of them is called and zeroes about `rate` of its
    # output (here 0.5; 0.3 to 0.7 over a few hundred values), at inference none zeroes any.
    make, arity = LAYERS[name]
    x = normal((4, 6, 16), seed=3)
    layer = make(0.5)
    layer(*([x] * arity))
    # (A block builds its MLP without dropout of its own: rate 0, never drops.)
    dropouts = [
        d for d in layer._flatten_layers() if isinstance(d, ku.layers.Dropout) and d.rate > 0
    ]
    assert len(dropouts) == (1 if name == "mlp" else 2), (name, [d.name for d in dropouts])
    seen = {}
    for d in dropouts:
        def recording(inputs, training=False, _d=d, _call=d.call):
            out = _call(inputs, training=training)
            seen.setdefault(_d.name, []).append(float(np.mean(np.asarray(out) == 0)))
            return out

        d.call = recording
    layer(*([x] * arity), training=True)
    assert set(seen) == {d.name for d in dropouts}, f"{name}: not called: {seen}"
    for d_name, fractions in seen.items():
        assert all(0.3 < f < 0.7 for f in fractions), (name, d_name, fractions)
    seen.clear()
    layer(*([x] * arity), training=False)
    assert all(f == 0 for fractions in seen.values() for f in fractions), (name, seen)
