"""Argument checks shared by the layers: one readable `ValueError` per bad argument."""

import keras

from keras_unitscale.ops.scale import positive_number  # noqa: F401 (shared with ops)


def positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"`{name}` must be a positive integer; received {value!r}.")
    return value


def float_input(x, name="inputs"):
    """Rejects integer/bool tensors where floats are expected."""
    dtype = keras.backend.standardize_dtype(getattr(x, "dtype", "float32"))
    if "float" not in dtype:
        raise ValueError(
            f"`{name}` must be a floating-point tensor; received dtype {dtype}. "
            "Cast it first, or feed token ids to an Embedding layer."
        )


def min_rank(shape, rank, name="inputs"):
    if len(shape) < rank:
        raise ValueError(
            f"`{name}` must have rank >= {rank}; received shape {tuple(shape)}."
        )
