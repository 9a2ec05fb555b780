"""The k-bit weight quantiser: error falls with k, scales are counted, representable values
survive exactly, bad arguments are named; and `quantize_model_weights` on a model."""

import keras
import numpy as np
import pytest

import keras_unitscale as ku
from keras_unitscale.quantization import kbit

W = np.random.default_rng(0).standard_normal((128, 96))


@pytest.mark.parametrize("dtype", kbit.DTYPES)
@pytest.mark.parametrize("block_size", kbit.BLOCK_SIZES)
def test_error_decreases_with_bits(dtype, block_size):
    errors = [
        float(np.mean((kbit.quantize_weights(W, k, dtype, block_size).values - W) ** 2))
        for k in kbit.BITS
    ]
    assert all(a > b for a, b in zip(errors, errors[1:])), errors
    # 8 bits leave a small fraction of the signal; 3 bits a large one.
    assert errors[-1] < 2e-3 and errors[0] > 5e-3, errors


def test_smaller_blocks_err_less_and_cost_more_bits():
    results = [kbit.quantize_weights(W, 4, "int", b) for b in (32, 128)]
    errors = [float(np.mean((r.values - W) ** 2)) for r in results]
    assert errors[0] < errors[1]
    assert results[0].bits_per_parameter > results[1].bits_per_parameter


@pytest.mark.parametrize("block_size,scale_bits,expected", [
    (32, 16, 4 + 16 / 32), (64, 16, 4 + 16 / 64), (128, 32, 4 + 32 / 128),
    (None, 16, 4 + 16 * 96 / W.size),  # one scale per output channel (last axis)
])
def test_block_scales_are_counted(block_size, scale_bits, expected):
    result = kbit.quantize_weights(W, 4, "quantile", block_size, scale_bits=scale_bits)
    assert result.bits_per_parameter == pytest.approx(expected)
    assert result.bits == pytest.approx(expected * W.size)


def test_a_short_last_block_pays_a_whole_scale():
    result = kbit.quantize_weights(np.ones(33), 5, "int", 32)
    assert result.num_scales == 2
    assert result.bits == 33 * 5 + 2 * 16


@pytest.mark.parametrize("bits", kbit.BITS)
@pytest.mark.parametrize("dtype", kbit.DTYPES)
def test_representable_values_round_trip_exactly(bits, dtype):
    grid = kbit.levels(bits, dtype)
    assert grid.max() == 1.0 and -1.0 <= grid.min() and 0.0 in grid
    assert len(grid) == 2**bits - (dtype != "quantile")  # a float has +0 and -0
    # Two blocks of 32: every level, times a float16-exact abs-max (1.5 and 0.25).
    rng = np.random.default_rng(bits)
    blocks = [rng.choice(grid, 32) for _ in range(2)]
    for b in blocks:
        b[0] = 1.0  # holds the abs-max
    values = np.concatenate([blocks[0] * 1.5, blocks[1] * 0.25])
    result = kbit.quantize_weights(values, bits, dtype, block_size=32)
    np.testing.assert_array_equal(result.values, values.astype("float32"))


def test_float_formats_match_known_grids():
    # OCP FP4 (E2M1): 0, 0.5, 1, 1.5, 2, 3, 4, 6; E4M3 without NaN tops at 480.
    assert (kbit.levels(4, "float") * 6)[7:].tolist() == [0, 0.5, 1, 1.5, 2, 3, 4, 6]
    fp8 = kbit.levels(8, "float")
    assert len(fp8) == 255 and fp8[fp8 > 0].min() * 480 == pytest.approx(2.0**-9)


@pytest.mark.parametrize("kwargs,name", [
    (dict(bits=2), "`bits`"), (dict(bits=9), "`bits`"), (dict(bits=4.0), "`bits`"),
    (dict(dtype="nf4"), "`dtype`"), (dict(block_size=0), "`block_size`"),
    (dict(block_size=64.0), "`block_size`"), (dict(scale_bits=8), "`scale_bits`"),
])
def test_bad_arguments_name_the_argument(kwargs, name):
    args = dict(weights=W, bits=4, dtype="int", block_size=64) | kwargs
    with pytest.raises(ValueError, match=name):
        kbit.quantize_weights(**args)


def test_bad_weights_are_refused():
    with pytest.raises(ValueError, match="`weights`"):
        kbit.quantize_weights(np.array([1.0, np.nan]), 4)
    with pytest.raises(ValueError, match="`weights`"):
        kbit.quantize_weights(np.zeros((0, 3)), 4)


def test_quantize_model_weights_quantizes_kernels_only():
    keras.utils.set_random_seed(0)
    ids = keras.Input((None,), dtype="int32")
    x = ku.layers.Dense(32, activation="gelu")(ku.layers.Embedding(40, 32)(ids))
    model = keras.Model(ids, ku.layers.LayerNormalization(scale=True, center=True)(x))
    before = {v.path: keras.ops.convert_to_numpy(v) for v in model.weights}
    summary = kbit.quantize_model_weights(model, bits=3, dtype="int", block_size=32)
    matrices = [v for v in model.weights if len(v.shape) >= 2]
    assert summary["quantized_parameters"] == sum(int(np.prod(v.shape)) for v in matrices)
    assert summary["bits_per_parameter"] == pytest.approx(3.5)
    assert summary["total_bits"] == pytest.approx(
        3.5 * summary["quantized_parameters"] + 16 * summary["other_parameters"]
    )
    for v in model.weights:
        after = keras.ops.convert_to_numpy(v)
        if len(v.shape) >= 2:  # at most 7 distinct values per block of 32
            assert len(np.unique(after[:1].reshape(-1)[:32])) <= 7
            assert not np.array_equal(after, before[v.path])
        else:
            np.testing.assert_array_equal(after, before[v.path])
