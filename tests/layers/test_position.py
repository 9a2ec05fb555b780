import keras
import numpy as np
import pytest
from keras import ops

import keras_unitscale as ku
from roundtrip import assert_config_roundtrip, assert_keras_roundtrip
from scale_utils import assert_unit, fn_stds, layer_stds, normal


def np_(x):
    return ops.convert_to_numpy(x)


def test_position_embedding_is_unit_scaled_and_offsets():
    layer = ku.layers.PositionEmbedding(sequence_length=160)
    x = normal((256, 128, 64))
    out, _, weights = layer_stds(layer, x)
    assert_unit(out, "output")
    # Only the 128 rows in use get a gradient; they are unit.
    grad_rows = 128 / 160
    assert_unit(weights[layer.position_embeddings.path] / grad_rows**0.5, "table grad")
    shifted = np_(layer(x[:1, :4], start_index=5))[0]
    np.testing.assert_allclose(shifted, np_(layer.position_embeddings)[5:9])
    with pytest.raises(ValueError, match="exceeds `sequence_length`"):
        ku.layers.PositionEmbedding(4)(x[:1, :8])


def test_sine_encoding_is_unit_and_shifts():
    layer = ku.layers.SinePositionEncoding()
    x = np.zeros((2, 256, 64), "float32")
    enc = np_(layer(x))
    assert enc.shape == (2, 256, 64)
    assert abs(np.sqrt(np.mean(enc**2)) - 1) < 1e-3
    np.testing.assert_allclose(np_(layer(x[:, :5], start_index=7)), enc[:, 7:12], atol=1e-4)
    with pytest.raises(ValueError, match="even"):
        layer(np.zeros((1, 3, 5), "float32"))


def test_rotary_keeps_norms_and_depends_on_relative_position():
    layer = ku.layers.RotaryEmbedding(max_wavelength=1000)
    q, k = normal((1, 1, 1, 32), seed=1), normal((1, 1, 1, 32), seed=2)

    def score(m, n):
        qm, kn = np_(layer(q, start_index=m)), np_(layer(k, start_index=n))
        return float(np.sum(qm * kn))

    assert score(3, 1) == pytest.approx(score(12, 10), rel=1e-4)
    assert score(3, 1) != pytest.approx(score(3, 2), rel=1e-3)
    x = normal((8, 128, 4, 64))
    out, (gx,) = fn_stds(lambda x: ku.ops.rotary_embedding(x, 0, 1000.0), x)
    assert_unit(out, "output", tol=0.02)
    assert_unit(gx, "input grad", tol=0.02)
    with pytest.raises(ValueError, match="sequence_axis"):
        ku.layers.RotaryEmbedding(sequence_axis=-1)(x)


def test_token_and_position_embedding():
    layer = ku.layers.TokenAndPositionEmbedding(1000, 64, 32, mask_zero=True)
    ids = np.random.default_rng(0).integers(1, 1000, (256, 64))
    out, _, weights = layer_stds(layer, ids)
    assert_unit(out, "output")
    for path, s in weights.items():
        assert_unit(s, path, tol=0.15)
    mask = np_(layer.compute_mask(np.array([[4, 0]])))
    assert mask.tolist() == [[True, False]]
    # Decoding one token at position 5 equals position 5 of the full pass.
    full = np_(layer(ids[:2, :8]))
    one = np_(layer(ids[:2, 5:6], start_index=5))
    np.testing.assert_allclose(one[:, 0], full[:, 5], atol=1e-6)


def test_position_roundtrips(tmp_path):
    for layer in (
        ku.layers.PositionEmbedding(10, name="pos"),
        ku.layers.SinePositionEncoding(max_wavelength=500, name="sine"),
    ):
        assert_config_roundtrip(layer)
        assert_keras_roundtrip(layer, normal((2, 6, 8)), tmp_path)
    rotary = ku.layers.RotaryEmbedding(max_wavelength=300, sequence_axis=1, name="rope")
    assert assert_config_roundtrip(rotary).max_wavelength == 300
    assert_keras_roundtrip(rotary, normal((2, 6, 2, 8)), tmp_path)
    tokens = ku.layers.TokenAndPositionEmbedding(50, 10, 8, mask_zero=True, name="tok")
    assert assert_config_roundtrip(tokens).mask_zero
    assert_keras_roundtrip(tokens, np.array([[3, 4, 0], [5, 0, 0]], "int32"), tmp_path)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: ku.layers.PositionEmbedding(0), "sequence_length"),
        (lambda: ku.layers.SinePositionEncoding(max_wavelength=1), "max_wavelength"),
        (lambda: ku.layers.RotaryEmbedding(max_wavelength=-5), "max_wavelength"),
        (lambda: ku.layers.TokenAndPositionEmbedding(0, 4, 4), "vocabulary_size"),
        (lambda: ku.layers.TokenAndPositionEmbedding(5, 4, 0), "embedding_dim"),
    ],
)
def test_bad_arguments_raise(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="token ids of shape"):
        ku.layers.TokenAndPositionEmbedding(5, 4, 4)(np.zeros((2, 3, 4), "int32"))
    with pytest.raises(ValueError, match=r"\[batch, length, dim\]"):
        ku.layers.PositionEmbedding(4)(np.zeros((2, 3), "float32"))
    with pytest.raises(ValueError, match="even"):
        ku.ops.rotary_embedding(np.zeros((1, 2, 3), "float32"))
