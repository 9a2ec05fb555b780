import keras
import numpy as np
import pytest
from keras import ops

import keras_unitscale as ku
from roundtrip import assert_config_roundtrip, assert_keras_roundtrip
from scale_utils import assert_unit, layer_stds, normal

from keras_unitscale.backend import layer_vjp


def np_(x):
    return ops.convert_to_numpy(x)


@pytest.mark.parametrize("causal", [False, True])
def test_self_attention_is_unit_scaled(causal):
    layer = ku.layers.MultiHeadAttention(num_heads=4, key_dim=64)
    x = normal((4, 128, 256), seed=5)
    out, (gq, gkv), weights = layer_stds(layer, x, x, use_causal_mask=causal)
    assert_unit(out, "output")
    # The self-attention input gradient is the sum of the query path's and the key/value
    # path's (independent): unit in total, the query path small (~ mult / sqrt(key_dim)).
    assert_unit((gq**2 + gkv**2) ** 0.5, "input grad", tol=0.15)
    # The query path, its kernel and the key kernel: about mult / sqrt(key_dim) = 0.125
    # (ops.attention's docstring); self-attention's shared input raises it to 0.14-0.16,
    # hence [0.8, 1.3] times (a doubled logit scale, or 1 / sqrt(d), gives 0.25 or more).
    band = (0.8 * 64**-0.5, 1.3 * 64**-0.5)
    for name, s in (("query path grad", gq), ("query_kernel", weights[layer.query_kernel.path]),
                    ("key_kernel", weights[layer.key_kernel.path])):
        assert band[0] <= s <= band[1], f"{name} grad std {s:.3f}, band {band}"
    for name in ("value_kernel", "output_kernel", "value_bias", "output_bias"):
        assert_unit(weights[getattr(layer, name).path], name, tol=0.1)


def test_cross_attention_shapes():
    layer = ku.layers.MultiHeadAttention(num_heads=2, key_dim=8, value_dim=4, output_shape=12)
    q, v = normal((2, 8, 16), seed=1), normal((2, 5, 12), seed=2)
    out, scores = layer(q, v, return_attention_scores=True)
    assert layer.output_kernel.shape == (8, 12)
    assert tuple(out.shape) == (2, 8, 12) and tuple(scores.shape) == (2, 2, 8, 5)
    np.testing.assert_allclose(np_(scores).sum(-1), 1.0, atol=1e-5)
    # A separate key: its length must match the value's, its width may differ.
    keyed = ku.layers.MultiHeadAttention(num_heads=2, key_dim=8)
    out = keyed(q, v, key=normal((2, 5, 7), seed=3))
    assert tuple(out.shape) == (2, 8, 16) and keyed.key_kernel.shape == (7, 16)


def test_padding_masks_hide_padded_tokens():
    layer = ku.layers.MultiHeadAttention(num_heads=2, key_dim=8)
    x = normal((2, 8, 16), seed=3)
    y = x.copy()
    y[:, 6:] = 50.0  # the padded positions
    mask = np.array([[1] * 6 + [0] * 2] * 2, bool)
    out_x = layer(x, x, query_mask=mask, value_mask=mask)
    out_y = layer(y, y, query_mask=mask, value_mask=mask)
    np.testing.assert_allclose(np_(out_x)[:, :6], np_(out_y)[:, :6], atol=1e-5)
    out_z = layer(y, y, attention_mask=np.broadcast_to(mask[:, None, :], (2, 8, 8)))
    np.testing.assert_allclose(np_(out_x)[:, :6], np_(out_z)[:, :6], atol=1e-5)


def test_keras_masks_reach_attention():
    ids = keras.Input((None,), dtype="int32")
    h = ku.layers.Embedding(50, 16, mask_zero=True, name="emb")(ids)
    out = ku.layers.MultiHeadAttention(num_heads=2, key_dim=8, name="mha")(h, h)
    model = keras.Model(ids, out)
    tokens = np.array([[3, 4, 5, 0, 0, 0, 0, 0], [7, 8, 9, 6, 1, 2, 3, 0]])
    emb, mha = model.get_layer("emb"), model.get_layer("mha")
    mask = tokens != 0
    x = ops.convert_to_tensor(np_(emb(tokens)))  # a plain tensor, without a Keras mask
    expected = np_(mha(x, x, query_mask=mask, value_mask=mask))
    np.testing.assert_allclose(np_(model(tokens)), expected, atol=1e-6)
    assert not np.allclose(np_(mha(x, x))[mask], expected[mask], atol=1e-3)
    assert out._keras_mask is not None


def test_causal_attention_ignores_later_tokens():
    layer = ku.layers.MultiHeadAttention(num_heads=2, key_dim=8, rotary_max_wavelength=100)
    x = normal((2, 8, 16), seed=4)
    y = x.copy()
    y[:, 6:] = -3.0
    out_x, out_y = (np_(layer(t, t, use_causal_mask=True)) for t in (x, y))
    np.testing.assert_allclose(out_x[:, :6], out_y[:, :6], atol=1e-5)
    assert np.abs(out_x[:, 6:] - out_y[:, 6:]).max() > 1e-2


@pytest.mark.parametrize("rotary", [None, 1000])
def test_cached_decoding_matches_full_pass(rotary):
    layer = ku.layers.MultiHeadAttention(
        num_heads=2, key_dim=8, rotary_max_wavelength=rotary, seed=0
    )
    x = normal((2, 8, 16), seed=6)
    full = np_(layer(x, x, use_causal_mask=True))
    cache = ops.zeros((2, 2, 8, 2, 8))
    # Prefill three tokens, then decode one at a time.
    out, cache = layer(x[:, :3], x[:, :3], use_causal_mask=True, cache=cache, cache_update_index=0)
    steps = [np_(out)]
    for t in range(3, 8):
        out, cache = layer(
            x[:, t : t + 1], x[:, t : t + 1], use_causal_mask=True, cache=cache,
            cache_update_index=t,
        )
        steps.append(np_(out))
    np.testing.assert_allclose(np.concatenate(steps, axis=1), full, atol=1e-4)
    # A static cache (no update index) reuses the projected keys/values as they are.
    out, same = layer(x[:, 7:8], x[:, :1], use_causal_mask=True, cache=cache)
    np.testing.assert_allclose(np_(same), np_(cache))


class _SelfAttend(keras.layers.Layer):
    def __init__(self, attention, **kwargs):
        super().__init__(**kwargs)
        self.attention = attention

    def call(self, x):
        return self.attention(x, x, use_causal_mask=True)


def test_self_attention_projects_qkv_in_one_matmul_with_the_same_numbers():
    # The fused projection (one matmul on the concatenated kernels) against three separate
    # ones: output, input gradient and every kernel gradient.
    x = normal((2, 8, 16), seed=3)
    fused, separate = (
        ku.layers.MultiHeadAttention(
            num_heads=2, key_dim=8, use_bias=False, rotary_max_wavelength=100
        )
        for _ in range(2)
    )
    separate._fuse_projections = False
    for layer in (fused, separate):
        layer(x, x)
    separate.set_weights(fused.get_weights())
    calls = []
    project = fused._project_self
    fused._project_self = lambda t: calls.append(1) or project(t)
    results = [layer_vjp(_SelfAttend(layer), x) for layer in (fused, separate)]
    assert calls, "self-attention did not take the fused projection"
    upstream = normal(tuple(results[0][0].shape), seed=4)
    (out_f, pull_f), (out_s, pull_s) = results
    np.testing.assert_allclose(np_(out_f), np_(out_s), rtol=1e-5, atol=1e-6)
    for g_f, g_s in zip(pull_f(upstream), pull_s(upstream)):
        np.testing.assert_allclose(np_(g_f), np_(g_s), rtol=1e-5, atol=1e-6)


def test_roundtrips(tmp_path):
    layer = ku.layers.MultiHeadAttention(
        num_heads=2, key_dim=8, value_dim=4, dropout=0.1, use_bias=False, output_shape=12,
        mult=2.0, constraint="gmean", rotary_max_wavelength=500, name="mha",
    )
    clone = assert_config_roundtrip(layer)
    assert clone.mult == 2.0 and clone.output_dim == 12 and clone.rotary_max_wavelength == 500

    q, v = normal((2, 8, 16), seed=1), normal((2, 5, 12), seed=2)
    assert_keras_roundtrip(layer, [q, v], tmp_path)


def test_fp8_hook_reaches_every_projection():
    calls = []

    class Recorder:
        def cast_forward(self, t):
            calls.append("fwd")
            return t

        def cast_gradient(self, t):
            return t

    layer = ku.layers.MultiHeadAttention(num_heads=2, key_dim=8)
    x = normal((2, 8, 16))
    plain = np_(layer(x, x))
    layer.fp8 = Recorder()
    np.testing.assert_allclose(np_(layer(x, x)), plain, rtol=1e-6)
    assert len(calls) == 8  # two operands of each of the four projections


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(num_heads=0, key_dim=8), "num_heads"),
        (dict(num_heads=-2, key_dim=8), "num_heads"),
        (dict(num_heads=2, key_dim=0), "key_dim"),
        (dict(num_heads=2, key_dim=8, value_dim=-1), "value_dim"),
        (dict(num_heads=2, key_dim=8, dropout=1.5), "dropout"),
        (dict(num_heads=2, key_dim=8, mult=0), "mult"),
        (dict(num_heads=2, key_dim=8, output_shape=(3, 4)), "output_shape"),
        (dict(num_heads=2, key_dim=7, rotary_max_wavelength=100), "even `key_dim`"),
        (dict(num_heads=2, key_dim=8, constraint="bogus"), "constraint"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ku.layers.MultiHeadAttention(**kwargs)


def test_bad_inputs_raise():
    layer = ku.layers.MultiHeadAttention(num_heads=2, key_dim=8)
    x = normal((2, 8, 16))
    with pytest.raises(ValueError, match="`query` must have shape"):
        layer(x[0], x[0])
    with pytest.raises(ValueError, match="same length"):
        ku.layers.MultiHeadAttention(2, 8)(x, x, key=normal((2, 4, 16)))
    with pytest.raises(ValueError, match="`attention_mask` must have shape"):
        layer(x, x, attention_mask=np.ones((8, 8), bool))
    with pytest.raises(ValueError, match="`cache` must have shape"):
        layer(x, x, cache=np.zeros((2, 2, 8, 3, 8), "float32"), cache_update_index=0)
    with pytest.raises(ValueError, match="cache_update_index"):
        layer(x, x, cache_update_index=0)
