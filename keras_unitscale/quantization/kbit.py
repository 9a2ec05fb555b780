"""A k-bit weight quantiser (k = 3..8) for the k-bit inference study (docs/kbit.md).

`quantize_weights(w, bits, dtype, block_size)` rounds every entry of `w` to the nearest of
`2**bits` levels (the data type's grid, scaled by its block's largest magnitude) and returns
the dequantised weights with the storage they would need, block scales included. It simulates
quantisation: values come back as float32, for measuring what a precision costs.

Data types (each a grid of levels in [-1, 1], with -1 or 1 at the block's abs-max):
- `"int"`: symmetric abs-max integers, `q / (2**(k-1) - 1)` for `q` in
  `[-(2**(k-1) - 1), 2**(k-1) - 1]` (`2**k - 1` levels: zero is exact, -2**(k-1) unused).
- `"float"`: a k-bit float with a sign bit, `e` exponent bits and `m = k - 1 - e` mantissa
  bits, exponent bias `2**(e-1) - 1`, subnormals, and no infinities or NaN (every code a
  finite number, as OCP's FP4/FP6 formats): `FLOAT_FORMATS` gives
  E1M1 (3 bits), E2M1 (4, OCP FP4), E2M2 (5), E2M3 (6, OCP FP6), E3M3 (7), E4M3 (8, the
  FP8 forward format, here without NaN), normalised so that the largest is 1.
- `"quantile"`: normal-float levels (NF-k, after Dettmers et al.'s NF4): quantiles of
  N(0, 1), `2**(k-1)` positive and `2**(k-1) - 1` negative ones and an exact zero, at evenly
  spaced probabilities up to `1 - (1/(2**(k+1) - 2) + 1/2**(k+1)) / 2` (0.9677 for k = 4),
  divided by the largest. Equal-mass bins for normally distributed weights.

Blocks: `block_size` consecutive entries of the flattened (row-major) tensor share one scale,
so a kernel `[fan_in, fan_out]` is split along its rows; the last block may be short and is
still charged a full scale. `block_size=None` is one scale per channel: per entry of the
last axis (a kernel's output unit, an embedding table's feature) for a tensor of rank >= 2,
per tensor for a vector. Scales (the block's abs-max) are stored in `scale_bits` (16: a
float16, rounded here; 32: a float32), and counted: bits per parameter is
`bits + scale_bits * number_of_scales / size`.
"""

import math
from statistics import NormalDist

import keras
import numpy as np

DTYPES = ("int", "float", "quantile")
BITS = tuple(range(3, 9))
BLOCK_SIZES = (32, 64, 128, None)  # the study's; any positive int works
# (exponent bits, mantissa bits) of the k-bit float formats, sign bit apart.
FLOAT_FORMATS = {3: (1, 1), 4: (2, 1), 5: (2, 2), 6: (2, 3), 7: (3, 3), 8: (4, 3)}


def _check(bits, dtype, block_size, scale_bits):
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or bits not in BITS:
        raise ValueError(f"`bits` must be an int from 3 to 8; received {bits!r}.")
    if dtype not in DTYPES:
        raise ValueError(f"`dtype` must be one of {list(DTYPES)}; received {dtype!r}.")
    if block_size is not None and (
        isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer))
        or block_size < 1
    ):
        raise ValueError(
            "`block_size` must be a positive int (the study uses 32, 64, 128) or None (one "
            f"scale per channel); received {block_size!r}."
        )
    if scale_bits not in (16, 32):
        raise ValueError(f"`scale_bits` must be 16 or 32; received {scale_bits!r}.")


def levels(bits, dtype):
    """The sorted grid of levels in [-1, 1] of a data type, with max |level| = 1: `2**bits`
    for "quantile", `2**bits - 1` for "int" (symmetric) and "float" (+0 and -0 coincide).

    Example:
    >>> (levels(3, "int") * 3).tolist()
    [-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0]
    >>> (levels(4, "float") * 6).tolist()[7:]  # OCP FP4 E2M1: 0, 0.5, 1, 1.5, 2, 3, 4, 6
    [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0]
    """
    _check(bits, dtype, None, 16)
    if dtype == "int":
        top = 2 ** (bits - 1) - 1
        grid = np.arange(-top, top + 1) / top
    elif dtype == "float":
        e, m = FLOAT_FORMATS[bits]
        bias = 2 ** (e - 1) - 1
        mantissas = np.arange(2**m) / 2**m
        positive = [mantissas * 2.0 ** (1 - bias)]  # subnormals (and zero)
        positive += [(1 + mantissas) * 2.0 ** (exp - bias) for exp in range(1, 2**e)]
        positive = np.concatenate(positive)
        grid = np.concatenate([-positive[1:], positive]) / positive.max()
    else:
        half = 2 ** (bits - 1)
        offset = 1 - (1 / (2 ** (bits + 1) - 2) + 1 / 2 ** (bits + 1)) / 2
        normal = NormalDist()
        pos = [normal.inv_cdf(p) for p in np.linspace(0.5, offset, half + 1)[1:]]
        neg = [-normal.inv_cdf(p) for p in np.linspace(0.5, offset, half)[1:]]
        grid = np.array(neg + [0.0] + pos) / max(pos)
    return np.unique(grid.astype("float64"))


class QuantizedWeights:
    """What `quantize_weights` returns: `values` (the dequantised weights, float32, the
    input's shape), `bits_per_parameter` (block scales included), `bits` (in all) and the
    settings (`bits_per_value`, `dtype`, `block_size`, `num_scales`)."""

    __slots__ = ("values", "bits_per_value", "dtype", "block_size", "num_scales", "scale_bits")

    def __init__(self, values, bits_per_value, dtype, block_size, num_scales, scale_bits):
        self.values = values
        self.bits_per_value = bits_per_value
        self.dtype = dtype
        self.block_size = block_size
        self.num_scales = num_scales
        self.scale_bits = scale_bits

    @property
    def bits(self):
        """Total storage in bits: one code per entry and one scale per block."""
        return self.values.size * self.bits_per_value + self.num_scales * self.scale_bits

    @property
    def bits_per_parameter(self):
        return self.bits / self.values.size

    def __repr__(self):
        return (
            f"QuantizedWeights(shape={self.values.shape}, dtype={self.dtype!r}, "
            f"bits={self.bits_per_value}, block_size={self.block_size}, "
            f"bits_per_parameter={self.bits_per_parameter:.4g})"
        )


def _round_to_grid(x, grid):
    """Each entry of `x` (already divided by its scale) to the nearest level of `grid`."""
    middles = (grid[1:] + grid[:-1]) / 2
    return grid[np.searchsorted(middles, x)]


def quantize_weights(weights, bits, dtype="int", block_size=64, scale_bits=16):
    """Quantises `weights` to `bits` bits of data type `dtype` in blocks of `block_size`.

    Args:
        weights: an array (any shape, at least one entry), finite.
        bits: 3 to 8.
        dtype: `"int"`, `"float"` or `"quantile"` (see the module's docstring).
        block_size: entries per scale (32, 64, 128 in the study), or None for one scale per
            channel (last axis) of a matrix, per tensor of a vector.
        scale_bits: 16 (scales rounded to float16) or 32.

    Returns:
        A `QuantizedWeights`; `.values` are the dequantised weights.

    Example:
    >>> import numpy as np
    >>> w = np.random.default_rng(0).standard_normal((256, 64))
    >>> q = quantize_weights(w, bits=4, dtype="int", block_size=64)
    >>> q.bits_per_parameter  # 4 bits + a 16-bit scale per 64 entries
    4.25
    >>> bool(np.abs(q.values - w).max() < 0.25 * np.abs(w).max())
    True
    """
    _check(bits, dtype, block_size, scale_bits)
    w = np.asarray(weights, dtype="float64")
    if w.size == 0 or not np.all(np.isfinite(w)):
        raise ValueError(
            "`weights` must be a non-empty array of finite numbers; received "
            f"shape {w.shape} with {int(np.sum(~np.isfinite(w)))} non-finite entries."
        )
    if block_size is None:
        blocks = w.reshape(-1, w.shape[-1]) if w.ndim >= 2 else w.reshape(-1, 1)
        absmax = np.abs(blocks).max(axis=0, keepdims=True)  # per channel (column)
    else:
        flat = w.reshape(-1)
        pad = (-flat.size) % block_size
        blocks = np.concatenate([flat, np.zeros(pad)]).reshape(-1, block_size)
        absmax = np.abs(blocks).max(axis=1, keepdims=True)
    scale_dtype = "float16" if scale_bits == 16 else "float32"
    absmax = absmax.astype(scale_dtype).astype("float64")
    safe = np.where(absmax > 0, absmax, 1.0)
    values = _round_to_grid(np.clip(blocks / safe, -1, 1), levels(bits, dtype)) * safe
    values = values.reshape(-1)[: w.size].reshape(w.shape).astype("float32")
    return QuantizedWeights(values, int(bits), dtype, block_size, int(absmax.size), scale_bits)


def quantizable_weights(model):
    """The weights `quantize_model_weights` quantises: every variable of rank >= 2 (matmul
    kernels, embedding and position tables), in the model's plain or unit-scaled layers;
    biases and norm gains (vectors) stay in float."""
    return [v for v in model.weights if len(v.shape) >= 2 and "float" in str(v.dtype)]


def quantize_model_weights(model, bits, dtype="int", block_size=64, scale_bits=16,
                           other_bits=16):
    """Replaces each matmul or embedding kernel of `model` by its k-bit quantised value, in
    place (simulated quantisation; keep `model.get_weights()` to go back).

    Args:
        model: a built Keras model (unit-scaled or plain Keras layers).
        bits, dtype, block_size, scale_bits: as `quantize_weights`.
        other_bits: bits counted for each parameter left in float (biases, norm gains).

    Returns:
        A dict: `quantized_parameters`, `other_parameters`, `bits_per_parameter` of the
        quantised ones (scales included) and `total_bits` of the whole model.

    Example:
    >>> import keras_unitscale as ku
    >>> backbone = ku.models.LSTMBackbone(vocabulary_size=64, hidden_dim=16)
    >>> summary = quantize_model_weights(backbone, bits=4, dtype="quantile", block_size=32)
    >>> summary["bits_per_parameter"]
    4.5
    """
    _check(bits, dtype, block_size, scale_bits)
    targets = quantizable_weights(model)
    if not targets:
        raise ValueError(f"`model` {model.name!r} has no built weight of rank >= 2 to quantise.")
    quantized_bits = 0.0
    count = 0
    for variable in targets:
        values = keras.ops.convert_to_numpy(variable)
        result = quantize_weights(values, bits, dtype, block_size, scale_bits)
        variable.assign(result.values.astype(variable.dtype))
        quantized_bits += result.bits
        count += result.values.size
    target_ids = {id(v) for v in targets}
    others = sum(math.prod(v.shape) for v in model.weights if id(v) not in target_ids)
    return {
        "quantized_parameters": count,
        "other_parameters": int(others),
        "bits_per_parameter": quantized_bits / count,
        "total_bits": quantized_bits + others * other_bits,
    }
