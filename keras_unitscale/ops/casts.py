"""Low-precision number formats, simulated in float32 with `keras.ops` only.

A cast to a format is computed arithmetically, so it gives the same bits on TensorFlow and
JAX, eagerly and under XLA, and needs no hardware support:

1. the exponent `e = floor(log2|x|)`, read exactly from the float32 bit layout (a bitcast,
   not `log2`, which may be an ulp off near powers of two and differs between backends),
   clamped below at the format's minimum normal exponent so that smaller values land on the
   subnormal grid;
2. the significand `|x| * 2**-e` is rounded to the format's mantissa bits (to nearest, ties to
   even; or stochastically between the two neighbours);
3. values past the largest finite one saturate to it, or become inf (NaN for E4M3, which has
   no inf), as `overflow` says.

Powers of two are likewise built from bits, never with `pow`. Every intermediate stays a
normal float32, so the result is exact even where a backend flushes float32 subnormals to
zero. (Inputs that are themselves float32 subnormals, below 1.2e-38, may be flushed by the
backend before we see them; this only matters for BF16, whose subnormals they are.) The tests
compare every value against `ml_dtypes`.

The formats (`FORMATS`):

| name   | mantissa bits | min normal | max    | inf | ml_dtypes            |
|--------|---------------|------------|--------|-----|----------------------|
| `e4m3` | 3             | 2**-6      | 448    | no  | `float8_e4m3fn`      |
| `e5m2` | 2             | 2**-14     | 57344  | yes | `float8_e5m2`        |
| `fp16` | 10            | 2**-14     | 65504  | yes | `float16`            |
| `bf16` | 7             | 2**-126    | 3.4e38 | yes | `bfloat16`           |
"""

import dataclasses

import keras
from keras import ops

from keras_unitscale.backend import compile_pure, custom_gradient


@dataclasses.dataclass(frozen=True)
class Format:
    """A binary floating-point format: sign, exponent and `mantissa_bits` explicit bits.

    Attributes:
        name: short name (`"e4m3"`, `"e5m2"`, `"fp16"`, `"bf16"`).
        mantissa_bits: explicit significand bits.
        min_exponent: exponent of the smallest normal number.
        max_value: largest finite value.
        has_inf: whether overflow can produce inf (E4M3 has only NaN).
        ml_dtype: the matching `ml_dtypes` / NumPy type name, for reference casts.

    Example:
    >>> from keras_unitscale.ops.casts import get_format
    >>> f = get_format("e4m3")
    >>> f.max_value, f.min_normal, f.min_subnormal
    (448.0, 0.015625, 0.001953125)
    """

    name: str
    mantissa_bits: int
    min_exponent: int
    max_value: float
    has_inf: bool
    ml_dtype: str

    @property
    def min_normal(self):
        return 2.0**self.min_exponent

    @property
    def min_subnormal(self):
        return 2.0 ** (self.min_exponent - self.mantissa_bits)

    def numpy_dtype(self):
        """The NumPy dtype of the format (from `ml_dtypes` for the 8-bit and bf16 formats)."""
        import ml_dtypes
        import numpy as np

        if self.ml_dtype == "float16":
            return np.dtype(np.float16)
        return np.dtype(getattr(ml_dtypes, self.ml_dtype))


FORMATS = {
    "e4m3": Format("e4m3", 3, -6, 448.0, False, "float8_e4m3fn"),
    "e5m2": Format("e5m2", 2, -14, 57344.0, True, "float8_e5m2"),
    "fp16": Format("fp16", 10, -14, 65504.0, True, "float16"),
    "bf16": Format("bf16", 7, -126, float.fromhex("0x1.fep127"), True, "bfloat16"),
}
_ALIASES = {
    "float8_e4m3fn": "e4m3",
    "float8_e4m3": "e4m3",
    "fp8_e4m3": "e4m3",
    "float8_e5m2": "e5m2",
    "fp8_e5m2": "e5m2",
    "float16": "fp16",
    "half": "fp16",
    "bfloat16": "bf16",
}
ROUNDINGS = ("nearest", "stochastic")
OVERFLOWS = ("saturate", "inf_nan")


def get_format(fmt):
    """Returns the `Format` for a name (`"e4m3"`, `"float8_e5m2"`, `"bf16"`, ...) or a `Format`.

    Example:
    >>> from keras_unitscale.ops.casts import get_format
    >>> get_format("float16").max_value
    65504.0
    """
    if isinstance(fmt, Format):
        return fmt
    if isinstance(fmt, str):
        key = fmt.lower()
        key = _ALIASES.get(key, key)
        if key in FORMATS:
            return FORMATS[key]
    raise ValueError(
        f"`fmt` must be one of {sorted(FORMATS)} (or an alias: {sorted(_ALIASES)}); "
        f"received {fmt!r}."
    )


def _check_choice(value, name, choices):
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {choices}; received {value!r}.")


# Exponents and powers of two come from the IEEE bit layout of the compute dtype (a bitcast,
# `ops.view`, exact and cheap on every backend and under XLA) rather than from `log2`/`pow`,
# whose accuracy differs between backends: `floor(log2(a))` is the biased exponent field
# minus the bias, and `2**k` is `k + bias` shifted into that field.
_LAYOUT = {"float32": ("int32", 23, 127), "float64": ("int64", 52, 1023)}


def _pow2(k):
    """`2**k` exactly, for integer-valued `k` in the compute dtype's normal exponent range."""
    dtype = keras.backend.standardize_dtype(k.dtype)
    int_dtype, shift, bias = _LAYOUT[dtype]
    field = ops.cast(k + bias, int_dtype)
    return ops.view(ops.left_shift(field, ops.cast(shift, int_dtype)), dtype)


def _exponent(a, min_exponent):
    """`floor(log2(a))` for finite `a >= 0`, clamped below at `min_exponent`."""
    dtype = keras.backend.standardize_dtype(a.dtype)
    int_dtype, shift, bias = _LAYOUT[dtype]
    bits = ops.view(a, int_dtype)  # sign bit is 0: a >= 0
    field = ops.right_shift(bits, ops.cast(shift, int_dtype))
    return ops.maximum(ops.cast(field - bias, dtype), float(min_exponent))


def _compute_dtype(dtype):
    return "float64" if dtype == "float64" else "float32"


def _resolve_seed(seed):
    if seed is None or isinstance(seed, keras.random.SeedGenerator):
        return seed
    if isinstance(seed, int) and not isinstance(seed, bool):
        return seed
    raise ValueError(
        f"`seed` must be None, an int or a `keras.random.SeedGenerator`; received {seed!r}."
    )


def cast_to_format(x, fmt, rounding="nearest", overflow="saturate", seed=None):
    """Quantises `x` to a low-precision format and returns it in `x`'s dtype.

    Args:
        x: a floating-point tensor.
        fmt: a format name (`"e4m3"`, `"e5m2"`, `"fp16"`, `"bf16"`, or an `ml_dtypes` name
            such as `"float8_e4m3fn"`) or a `Format`.
        rounding: `"nearest"` (ties to even, as hardware casts do) or `"stochastic"` (round up
            with probability equal to the distance from the lower neighbour, in units of the
            spacing: unbiased in expectation, and only ever one of the two neighbours).
        overflow: `"saturate"` clamps finite overflows and +-inf to +-max (like CUDA's
            `__NV_SATFINITE`); `"inf_nan"` gives +-inf, or NaN in E4M3 (which has no inf),
            exactly as `ml_dtypes` casts do. NaN stays NaN either way.
        seed: for stochastic rounding: an int, a `keras.random.SeedGenerator`, or None (the
            global generator, which cannot be used inside a compiled JAX function).

    Example:
    >>> import numpy as np
    >>> from keras_unitscale.ops.casts import cast_to_format
    >>> x = np.array([1.0625, 1.1875, 500.0, 0.0009], "float32")
    >>> np.asarray(cast_to_format(x, "e4m3")).tolist()
    [1.0, 1.25, 448.0, 0.0]
    >>> np.asarray(cast_to_format(x, "e4m3", overflow="inf_nan"))[2]
    np.float32(nan)
    """
    f = get_format(fmt)
    _check_choice(rounding, "rounding", ROUNDINGS)
    _check_choice(overflow, "overflow", OVERFLOWS)
    x = ops.convert_to_tensor(x)
    return _cast(x, f, overflow, _noise(x, rounding, seed))


def _float_dtype(x):
    dtype = keras.backend.standardize_dtype(x.dtype)
    if "float" not in dtype:
        raise ValueError(f"`cast_to_format` expects a floating-point tensor; got dtype {dtype}.")
    return dtype


def _noise(x, rounding, seed):
    """Uniform [0, 1) noise for stochastic rounding, or None for round-to-nearest."""
    if rounding == "nearest":
        return None
    seed = _resolve_seed(seed)
    cdtype = _compute_dtype(_float_dtype(x))
    return keras.random.uniform(ops.shape(x), dtype=cdtype, seed=seed)


def _cast(x, f, overflow, noise):
    _float_dtype(x)
    return _compiled_cast(x, f, overflow, noise)


def _cast_impl(x, f, overflow, noise):
    dtype = _float_dtype(x)
    cdtype = _compute_dtype(dtype)
    xc = ops.cast(x, cdtype)

    a = ops.abs(xc)
    finite = ops.isfinite(xc)
    a_fin = ops.where(finite, a, ops.zeros_like(a))
    e = _exponent(a_fin, f.min_exponent)
    # The significand in units of the format's spacing at exponent e: |x| * 2**(m - e),
    # computed as |x| * 2**(1 - e) / 2 * 2**m so the power of two stays in the normal range
    # (e <= 127 for float32, so 1 - e >= -126).
    y = a_fin * _pow2(1.0 - e) * (0.5 * 2.0**f.mantissa_bits)
    if noise is None:
        q = ops.round(y)  # halves to even
    else:
        # Up with probability frac(y). Comparing (rather than flooring y + noise) keeps
        # representable values exact: frac(y) = 0 never rounds up.
        low = ops.floor(y)
        q = low + ops.cast(ops.cast(noise, cdtype) < (y - low), cdtype)
    r = q * 2.0**-f.mantissa_bits * _pow2(e)

    too_big = r > f.max_value
    if overflow == "saturate":
        r = ops.where(too_big | ops.isinf(xc), ops.full_like(r, f.max_value), r)
    else:
        special = float("inf") if f.has_inf else float("nan")
        r = ops.where(too_big | ops.isinf(xc), ops.full_like(r, special), r)
    r = ops.where(xc < 0, -r, r)
    r = ops.where(ops.isnan(xc), xc, r)
    return ops.cast(r, dtype)


_compiled_cast = compile_pure(_cast_impl, static_argnums=(1, 2))


def _checked(fmt, rounding, overflow):
    f = get_format(fmt)
    _check_choice(rounding, "rounding", ROUNDINGS)
    _check_choice(overflow, "overflow", OVERFLOWS)
    return f


def quantize_fwd(x, fmt, rounding="nearest", overflow="saturate", seed=None):
    """Casts `x` to `fmt` in the forward pass; the gradient passes straight through.

    Arguments as in `cast_to_format`.

    Example:
    >>> import numpy as np
    >>> from keras_unitscale.ops.casts import quantize_fwd
    >>> np.asarray(quantize_fwd(np.array([1.07], "float32"), "e5m2")).tolist()
    [1.0]
    """
    f = _checked(fmt, rounding, overflow)
    x = ops.convert_to_tensor(x)
    # Noise is drawn out here, in the caller's trace: a SeedGenerator advanced inside a
    # custom-gradient function would leak a tracer on JAX.
    noise = _noise(x, rounding, seed)
    if noise is None:
        return custom_gradient(lambda t: (_cast(t, f, overflow, None), lambda g: (g,)))(x)

    def fwd(t, u):
        return _cast(t, f, overflow, u), lambda g: (g, ops.zeros_like(u))

    return custom_gradient(fwd)(x, noise)


def quantize_bwd(x, fmt, rounding="nearest", overflow="saturate", seed=None):
    """Identity in the forward pass; casts the gradient flowing back through it to `fmt`.

    Arguments as in `cast_to_format`; the gradient keeps its own dtype.

    Example:
    >>> import numpy as np
    >>> from keras_unitscale.backend import vjp
    >>> from keras_unitscale.ops.casts import quantize_bwd
    >>> x = np.ones(2, "float32")
    >>> _, pullback = vjp(lambda t: quantize_bwd(t, "e5m2"), x)
    >>> np.asarray(pullback(np.array([1.07, 1e5], "float32"))[0]).tolist()
    [1.0, 57344.0]
    """
    f = _checked(fmt, rounding, overflow)
    x = ops.convert_to_tensor(x)
    noise = _noise(x, rounding, seed)  # the gradient has x's shape
    if noise is None:
        return custom_gradient(lambda t: (t, lambda g: (_cast(g, f, overflow, None),)))(x)

    def bwd(t, u):
        return t, lambda g: (_cast(g, f, overflow, u), ops.zeros_like(u))

    return custom_gradient(bwd)(x, noise)
