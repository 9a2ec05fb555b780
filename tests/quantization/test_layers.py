"""Keras' `quantize("int8" | "int4")` on each unit-scaled layer with kernels.

The reference is computed here, independently of the layer: Keras' abs-max rule in NumPy
(int8 and per-channel int4 symmetric, `w ~ round(w * s) / s` with `s = qmax / max|w|` per
channel; block int4 asymmetric, `w ~ (q - zero) * scale` per block along the contracting
axis). The float layer run with those weights must give the quantised layer's output: the
same unit-scaled forward math, every fixed scale kept.
"""

import keras
import numpy as np
import pytest

import keras_unitscale as ku
from keras_unitscale.models.lm_head import LMHead
from tests.roundtrip import assert_keras_roundtrip

RNG = np.random.default_rng(0)
SEQ = RNG.standard_normal((2, 6, 16)).astype("float32")
FLAT = RNG.standard_normal((8, 40)).astype("float32")
IDS = RNG.integers(0, 60, (2, 7)).astype("int32")


def _reference(w, mode, block, channel_axis):
    """Keras' quantise-then-dequantise of a 2-D weight, in NumPy."""
    m = w if channel_axis == 1 else w.T  # [contracting, channels]
    if mode == "int8" or block is None:
        qmax, qmin = (127, -127) if mode == "int8" else (7, -8)
        s = qmax / np.maximum(np.abs(m).max(axis=0, keepdims=True), keras.backend.epsilon())
        out = np.clip(np.round(m * s), qmin, qmax) / s
    else:
        out = np.empty_like(m)
        for start in range(0, m.shape[0], block):
            g = m[start:start + block]
            lo, hi = g.min(axis=0), g.max(axis=0)
            scale = (hi - lo + keras.backend.epsilon()) / 15
            zero = np.clip(np.round(-lo / scale) - 8, -8, 7)
            out[start:start + block] = (np.clip(np.round(g / scale) + zero, -8, 7) - zero) * scale
    return out if channel_axis == 1 else out.T


LAYERS = {
    "dense": (lambda: ku.layers.Dense(16, activation="gelu"), [FLAT], 1),
    "readout": (lambda: ku.layers.Dense(16, readout=True), [FLAT], 1),
    "embedding": (lambda: ku.layers.Embedding(60, 16), [IDS], 0),
    "position": (lambda: ku.layers.PositionEmbedding(sequence_length=12), [SEQ], 0),
    "attention": (lambda: ku.layers.MultiHeadAttention(num_heads=2, key_dim=8), [SEQ, SEQ], 1),
    "lstm": (lambda: ku.layers.LSTM(8, return_sequences=True), [SEQ], 1),
    "gru": (lambda: ku.layers.GRU(8), [SEQ], 1),
    "lm_head": (lambda: LMHead(30), [SEQ], 1),
}
# (mode, Keras config, block size of the reference)
MODES = {
    "int8": ("int8", None, None),
    "int4": ("int4", None, 128),  # Keras' default: blocks of 128
    "int4_block8": ("int4", keras.quantizers.Int4QuantizationConfig(block_size=8), 8),
    "int4_channel": ("int4", keras.quantizers.Int4QuantizationConfig(block_size=-1), None),
}


def _quantize(layer, mode, config):
    for sublayer in layer._flatten_layers():  # an LSTM's weights live in its cell
        if getattr(sublayer, "_kernel_specs", None):
            sublayer.quantize(mode, config=config)


# Every layer once, every mode several times; recurrent layers are slow to call, so once.
CASES = [
    ("dense", "int8"), ("dense", "int4"), ("dense", "int4_block8"), ("dense", "int4_channel"),
    ("readout", "int8"), ("embedding", "int8"), ("embedding", "int4_block8"),
    ("embedding", "int4_channel"), ("position", "int4"), ("attention", "int8"),
    ("attention", "int4_block8"), ("lstm", "int4_block8"), ("gru", "int8"),
    ("lm_head", "int4_channel"),
]

ROUND_TRIPS = {("dense", "int4"), ("embedding", "int8"), ("attention", "int4_block8"),
               ("lstm", "int4_block8"), ("position", "int4")}


@pytest.mark.parametrize("layer_name,mode_name", CASES)
def test_quantised_layer_is_the_float_layer_with_dequantised_weights(
    layer_name, mode_name, tmp_path
):
    make, inputs, channel_axis = LAYERS[layer_name]
    mode, config, block = MODES[mode_name]
    keras.utils.set_random_seed(1)
    layer = make()
    float_out = np.asarray(layer(*inputs))
    weights = [keras.ops.convert_to_numpy(w) for w in layer.weights]
    # The float layer itself, run with the reference's dequantised kernels.
    layer.set_weights([
        _reference(w, mode, block, channel_axis) if len(v.shape) == 2 and "bias" not in v.name
        else w
        for v, w in zip(layer.weights, weights)
    ])
    expected = np.asarray(layer(*inputs))
    layer.set_weights(weights)

    _quantize(layer, mode, config)
    actual = np.asarray(layer(*inputs))
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-4)
    # And it is not the float output: the weights did change.
    assert np.abs(actual - float_out).max() > 1e-4
    stored = [w for w in layer.weights if w.dtype == "int8"]
    assert stored and all(not w.trainable for w in stored)
    policies = {s.dtype_policy.name for s in layer._flatten_layers() if s.quantization_mode}
    expected_policy = mode if mode == "int8" else f"int4/{-1 if block is None else block}"
    assert policies == {f"{expected_policy}_from_float32"}
    # A `.keras` file of the quantised layer rebuilds the integer weights from its policy
    # (an LSTM's or GRU's cell from the layer's `cell_dtype`).
    if (layer_name, mode_name) in ROUND_TRIPS:
        restored = assert_keras_roundtrip(layer, inputs, tmp_path)
        assert any(w.dtype == "int8" for w in restored.weights)


def test_int4_packs_two_values_a_byte():
    layer = ku.layers.Dense(16)
    layer(FLAT)
    layer.quantize("int4", config=keras.quantizers.Int4QuantizationConfig(block_size=-1))
    assert tuple(layer.kernel.shape) == (40, 8)
    assert tuple(layer.kernel_scale.shape) == (16,)


def test_quantize_twice_or_unknown_mode_is_refused():
    layer = ku.layers.Dense(4)
    layer(FLAT)
    with pytest.raises(ValueError, match="mode"):
        layer.quantize("int3")
    layer.quantize("int8")
    with pytest.raises(ValueError, match="already quantized"):
        layer.quantize("int8")
