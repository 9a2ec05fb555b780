import keras
import ml_dtypes
import numpy as np
import pytest

from keras_unitscale import ops as uops
from keras_unitscale.backend import vjp
from keras_unitscale.ops.formats import (
    FORMATS,
    FP8Simulation,
    cast_to_format,
    get_format,
    quantize_bwd,
    quantize_fwd,
)

INF, NAN = float("inf"), float("nan")


def cast(x, fmt, **kwargs):
    return keras.ops.convert_to_numpy(cast_to_format(np.asarray(x, "float32"), fmt, **kwargs))


def assert_same(actual, expected):
    actual, expected = np.asarray(actual, "float32"), np.asarray(expected, "float32")
    same = (actual == expected) | (np.isnan(actual) & np.isnan(expected))
    bad = np.flatnonzero(~same)
    got, want = actual[bad[:5]], expected[bad[:5]]
    assert not bad.size, f"{bad.size} mismatches, e.g. got {got}, want {want}"


# (input, nearest/saturate, nearest/inf_nan) per format.
KNOWN = {
    "e4m3": [
        (1.0625, 1.0, 1.0),  # tie between 1 and 1.125: to even
        (1.1875, 1.25, 1.25),  # tie between 1.125 and 1.25: to even
        (448.0, 448.0, 448.0),  # largest finite
        (464.0, 448.0, 448.0),  # tie with the (NaN) pattern above: to even, 448
        (465.0, 448.0, NAN),  # overflow: saturate, or NaN (E4M3 has no inf)
        (1e9, 448.0, NAN),
        (INF, 448.0, NAN),
        (-INF, -448.0, NAN),
        (NAN, NAN, NAN),
        (2.0**-6, 2.0**-6, 2.0**-6),  # smallest normal
        (7 * 2.0**-9, 7 * 2.0**-9, 7 * 2.0**-9),  # largest subnormal
        (2.0**-9, 2.0**-9, 2.0**-9),  # smallest subnormal
        (2.0**-10, 0.0, 0.0),  # tie between 0 and the smallest subnormal: to 0
        (1.5 * 2.0**-10, 2.0**-9, 2.0**-9),
        (3 * 2.0**-10, 2.0**-8, 2.0**-8),  # subnormal tie: to the even 2 * 2**-9
        (-0.3, -0.3125, -0.3125),
    ],
    "e5m2": [
        (1.125, 1.0, 1.0),  # tie: to even
        (1.375, 1.5, 1.5),
        (57344.0, 57344.0, 57344.0),  # largest finite
        (61439.0, 57344.0, 57344.0),
        (61440.0, 57344.0, INF),  # tie with 2**16: to even, which overflows
        (-1e6, -57344.0, -INF),
        (INF, 57344.0, INF),
        (2.0**-14, 2.0**-14, 2.0**-14),  # smallest normal
        (2.0**-16, 2.0**-16, 2.0**-16),  # smallest subnormal
        (2.0**-17, 0.0, 0.0),
        (3 * 2.0**-17, 2.0**-15, 2.0**-15),
    ],
    "fp16": [
        (65504.0, 65504.0, 65504.0),
        (65519.0, 65504.0, 65504.0),
        (65520.0, 65504.0, INF),
        (2.0**-14, 2.0**-14, 2.0**-14),  # 6.1e-5
        (2.0**-24, 2.0**-24, 2.0**-24),
        (2.0**-25, 0.0, 0.0),
        (1 + 2.0**-11, 1.0, 1.0),
        (1 + 3 * 2.0**-11, 1 + 2.0**-9, 1 + 2.0**-9),
    ],
    "bf16": [
        (1 + 2.0**-8, 1.0, 1.0),
        (1 + 3 * 2.0**-8, 1 + 2.0**-6, 1 + 2.0**-6),
        (float.fromhex("0x1.fep127"), float.fromhex("0x1.fep127"), float.fromhex("0x1.fep127")),
        (float.fromhex("0x1.ffp127"), float.fromhex("0x1.fep127"), INF),
        (2.0**-126, 2.0**-126, 2.0**-126),
        (65504.0, 65536.0, 65536.0),
    ],
}


@pytest.mark.parametrize("fmt", sorted(KNOWN))
def test_known_values(fmt):
    x, saturated, inf_nan = (np.array(col, "float32") for col in zip(*KNOWN[fmt]))
    assert_same(cast(x, fmt), saturated)
    assert_same(cast(x, fmt, overflow="inf_nan"), inf_nan)


def test_format_table():
    assert get_format("float8_e4m3fn") is FORMATS["e4m3"]
    for name, f in FORMATS.items():
        info = ml_dtypes.finfo(f.numpy_dtype())
        assert f.max_value == float(info.max), name
        assert f.min_normal == float(info.smallest_normal), name
        assert f.min_subnormal == float(info.smallest_subnormal), name
    assert FORMATS["fp16"].max_value == 65504.0 and abs(FORMATS["fp16"].min_normal - 6.1e-5) < 1e-6


def _sample(fmt, seed=0):
    """Every value of the format, the midpoints between neighbours (ties) and their float32
    neighbours, random float32 bit patterns and log-uniform magnitudes."""
    dtype = get_format(fmt).numpy_dtype()
    bits = np.arange(2 ** (8 * dtype.itemsize), dtype=f"uint{8 * dtype.itemsize}")
    values = np.unique(bits.view(dtype).astype("float32"))
    values = values[np.isfinite(values)]
    mids = (values[:-1].astype("float64") + values[1:]) / 2
    mids = mids.astype("float32")
    up, down = np.float32(INF), np.float32(-INF)
    edges = [values, mids, np.nextafter(mids, up), np.nextafter(mids, down)]
    rng = np.random.default_rng(seed)
    random_bits = rng.integers(0, 2**32, size=50_000, dtype=np.uint64).astype(np.uint32)
    mags = np.exp2(rng.uniform(-40, 40, 50_000)) * rng.choice([-1, 1], 50_000)
    special = np.array([0.0, -0.0, INF, -INF, NAN, 3e38, -3e38], "float32")
    x = np.concatenate(edges + [random_bits.view("float32"), mags.astype("float32"), special])
    # Float32 subnormals (< 1.2e-38) may be flushed to zero by the backend before any op.
    return x[~((np.abs(x) < 2.0**-126) & (x != 0))]


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_matches_ml_dtypes(fmt):
    x = _sample(fmt)
    with np.errstate(over="ignore", invalid="ignore"):
        expected = x.astype(get_format(fmt).numpy_dtype()).astype("float32")
    assert_same(cast(x, fmt, overflow="inf_nan"), expected)
    f = get_format(fmt)
    clamped = np.where(x > 0, f.max_value, -f.max_value)
    saturated = np.where(np.isnan(x) | np.isfinite(expected), expected, clamped)
    assert_same(cast(x, fmt), saturated)


class _Cast(keras.layers.Layer):
    def __init__(self, fmt, **kwargs):
        super().__init__(**kwargs)
        self.fmt = fmt

    def call(self, x):
        return cast_to_format(x, self.fmt, overflow="inf_nan")


def test_matches_ml_dtypes_under_xla():
    x = np.concatenate([_sample("e4m3"), _sample("e5m2")])
    for fmt in ("e4m3", "e5m2"):
        inputs = keras.Input((1,))
        model = keras.Model(inputs, _Cast(fmt)(inputs))
        model.compile(jit_compile=True)
        got = model.predict(x[:, None], batch_size=len(x), verbose=0)[:, 0]
        with np.errstate(over="ignore", invalid="ignore"):
            assert_same(got, x.astype(get_format(fmt).numpy_dtype()).astype("float32"))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_keeps_input_dtype(dtype):
    x = keras.ops.cast(np.array([1.1, -300.0, 0.01], "float32"), dtype)
    y = cast_to_format(x, "e4m3")
    assert keras.backend.standardize_dtype(y.dtype) == dtype
    ref = np.array([1.125, -288.0, 0.009765625], "float32")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(keras.ops.cast(y, "float32")), ref)


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="fmt"):
        cast([1.0], "e3m4")
    with pytest.raises(ValueError, match="rounding"):
        cast([1.0], "e4m3", rounding="down")
    with pytest.raises(ValueError, match="overflow"):
        cast([1.0], "e4m3", overflow="wrap")
    with pytest.raises(ValueError, match="floating-point"):
        cast_to_format(np.array([1, 2], "int32"), "e4m3")


def test_stochastic_rounding_picks_neighbours_and_is_unbiased():
    f = get_format("e4m3")
    rng = np.random.default_rng(0)
    # 64 values spread over normal and subnormal binades, each rounded 4000 times.
    values = (rng.uniform(1, 2, 64) * np.exp2(rng.integers(-9, 8, 64))).astype("float32")
    x = np.repeat(values[None], 4000, axis=0)
    y = cast(x, "e4m3", rounding="stochastic", seed=7)
    # The two neighbours of each value: the nearest below and above (via ml_dtypes's grid).
    grid = np.unique(np.arange(256, dtype="uint8").view(f.numpy_dtype()).astype("float32"))
    grid = grid[np.isfinite(grid)]
    below = grid[np.searchsorted(grid, values, side="right") - 1]
    above = grid[np.searchsorted(grid, values, side="left")]
    assert np.all((y == below) | (y == above))
    # Unbiased: the mean of n draws has std <= spacing / (2 sqrt(n)); allow 5 of those.
    spacing = above - below
    err = np.abs(y.astype("float64").mean(axis=0) - values)
    assert np.all(err <= 5 * spacing / (2 * np.sqrt(x.shape[0])) + 1e-12), err / spacing
    # Representable values never move.
    assert_same(cast(grid, "e4m3", rounding="stochastic", seed=3), grid)
    # Seeded: reproducible.
    assert_same(cast(x[:2], "e4m3", rounding="stochastic", seed=7), y[:2])


def test_stochastic_rounding_with_seed_generator_varies():
    gen = keras.random.SeedGenerator(1)
    x = np.full(1000, 1.1, "float32")
    a = cast_to_format(x, "e4m3", rounding="stochastic", seed=gen)
    b = cast_to_format(x, "e4m3", rounding="stochastic", seed=gen)
    assert np.any(keras.ops.convert_to_numpy(a) != keras.ops.convert_to_numpy(b))


def test_quantize_fwd_casts_values_and_passes_gradient():
    x = np.array([1.1, 500.0, 3e-4], "float32")
    out, pullback = vjp(lambda t: quantize_fwd(t, "e4m3"), x)
    assert_same(keras.ops.convert_to_numpy(out), [1.125, 448.0, 0.0])
    g = np.array([1.1, -2.3, 1e6], "float32")
    assert_same(keras.ops.convert_to_numpy(pullback(g)[0]), g)


@pytest.mark.parametrize("rounding", ["nearest", "stochastic"])
def test_quantize_bwd_casts_gradient_only(rounding):
    x = np.array([1.1, 500.0, 3e-6, 7.0], "float32")
    out, pullback = vjp(lambda t: quantize_bwd(t, "e5m2", rounding=rounding, seed=1), x)
    assert_same(keras.ops.convert_to_numpy(out), x)
    g = np.array([1.125, 1e6, 1e-6, 1.0], "float32")
    got = keras.ops.convert_to_numpy(pullback(g)[0])
    if rounding == "nearest":
        assert_same(got, [1.0, 57344.0, 0.0, 1.0])
    else:
        assert got[0] in (1.0, 1.25) and got[1] == 57344.0 and got[2] in (0.0, 2.0**-16)
        assert got[3] == 1.0


def test_fp8_simulation_in_linear():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 64)).astype("float32")
    w = rng.standard_normal((64, 16)).astype("float32")
    sim = FP8Simulation()
    # Forward: the product of the E4M3-cast operands.
    expected = uops.linear(cast(x, "e4m3"), cast(w, "e4m3"))
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(uops.linear(x, w, fp8=sim)), keras.ops.convert_to_numpy(expected)
    )
    # Backward: the gradient reaching the matmul output is cast to E5M2 first.
    g = rng.standard_normal((32, 16)).astype("float32")
    grad_only = FP8Simulation(forward_format=None)
    _, pullback = vjp(lambda a: uops.linear(a, w, fp8=grad_only), x)
    _, ref_pullback = vjp(lambda a: uops.linear(a, w), x)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(pullback(g)[0]),
        keras.ops.convert_to_numpy(ref_pullback(cast(g, "e5m2"))[0]),
        rtol=1e-6,
        atol=1e-6,
    )


def test_fp8_simulation_config_and_validation():
    sim = FP8Simulation("e5m2", "fp16", rounding="stochastic", overflow="inf_nan", seed=3)
    clone = FP8Simulation.from_config(sim.get_config())
    assert clone == sim and clone.seed_generator is not None
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(sim))
    assert restored == sim
    assert FP8Simulation().seed_generator is None
    with pytest.raises(ValueError, match="forward_format"):
        FP8Simulation(forward_format="e9m9")
    with pytest.raises(ValueError, match="rounding"):
        FP8Simulation(rounding="up")
    with pytest.raises(ValueError, match="seed"):
        FP8Simulation(seed="x")
