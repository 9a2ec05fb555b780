"""Argument checks shared by every module: one readable `ValueError` per bad argument.

Each check takes the value and the `name` the user wrote it under (the constructor's or the
method's argument, never an internal one), returns the value in its canonical form and
otherwise raises `ValueError` (`TypeError` where the type, not the value, is wrong) saying
which argument, what was expected and what came: "`name` must be ...; received ...".

Values only data can reveal (token ids, masks, lengths) are checked on concrete (NumPy)
values before a compiled function runs: `ids_in_range`, `same_shape`, `length_at_most`.

This module imports nothing from `keras_unitscale`, so `ops/` and everything above can use it.
"""

import math
import numbers

import numpy as np


def _is_real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_int(value):
    return isinstance(value, (numbers.Integral, np.integer)) and not isinstance(
        value, (bool, np.bool_)
    )


# Numbers ---------------------------------------------------------------------------------
def positive_int(value, name):
    """A Python or NumPy integer > 0, returned as `int`."""
    if not _is_int(value) or value <= 0:
        raise ValueError(f"`{name}` must be a positive integer; received {value!r}.")
    return int(value)


def non_negative_int(value, name):
    """A Python or NumPy integer >= 0, returned as `int`."""
    if not _is_int(value) or value < 0:
        raise ValueError(f"`{name}` must be a non-negative integer; received {value!r}.")
    return int(value)


def finite_number(value, name):
    """A finite real number (no NaN or infinity), returned as `float`."""
    if not _is_real(value) or not math.isfinite(float(value)):
        raise ValueError(f"`{name}` must be a finite number; received {value!r}.")
    return float(value)


def positive_number(value, name):
    """A positive, finite real number (multipliers, scales, epsilons), returned as `float`."""
    if not _is_real(value) or not 0 < float(value) < math.inf:
        raise ValueError(f"`{name}` must be a positive number; received {value!r}.")
    return float(value)


def non_negative_number(value, name):
    """A finite real number >= 0, returned as `float`."""
    if not _is_real(value) or not 0 <= float(value) < math.inf:
        raise ValueError(f"`{name}` must be a non-negative number; received {value!r}.")
    return float(value)


def probability(value, name):
    """A rate in `[0, 1)` (dropout), returned as `float`."""
    if not _is_real(value) or not 0.0 <= float(value) < 1.0:
        raise ValueError(f"`{name}` must be a float in [0, 1); received {value!r}.")
    return float(value)


def open_fraction(value, name):
    """A fraction strictly between 0 and 1 (a validation split), returned as `float`."""
    if not _is_real(value) or not 0.0 < float(value) < 1.0:
        raise ValueError(
            f"`{name}` must be a float strictly between 0 and 1; received {value!r}."
        )
    return float(value)


# Choices and sequences ---------------------------------------------------------------------
def one_of(value, choices, name):
    """`value` if it is one of `choices`."""
    if value not in tuple(choices):
        raise ValueError(f"`{name}` must be one of {list(choices)}; received {value!r}.")
    return value


def int_tuple(value, name):
    """A list or tuple of integers, returned as a tuple of `int` (a lone int is refused, so
    that `(3,)` and `3` are not confused with something else)."""
    if _is_int(value):
        raise ValueError(
            f"`{name}` must be a tuple of integers; received the int {value!r}: write "
            f"({int(value)},)."
        )
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if not isinstance(value, (list, tuple)) or not all(_is_int(v) for v in value):
        raise ValueError(f"`{name}` must be a tuple of integers; received {value!r:.80}.")
    return tuple(int(v) for v in value)


# Tensors (static shapes, dtypes, concrete values) -------------------------------------------
def dtype_name(x):
    """The standard name of `x`'s dtype ("float32", "int32", ...)."""
    dtype = getattr(x, "dtype", None)
    if dtype is None:
        dtype = np.asarray(x).dtype
    name = getattr(dtype, "name", None) or str(dtype)
    return name.replace("tf.", "")


def integer_dtype(x, name):
    """Token ids must be integers: float ids would be cut silently by a cast."""
    dtype = dtype_name(x)
    if "int" not in dtype:
        raise ValueError(
            f"`{name}` must hold integer token ids; received dtype {dtype}. Token ids are "
            "not cast: convert them with `.astype('int32')` if they really are whole numbers."
        )


def float_input(x, name="inputs"):
    """Rejects integer/bool tensors where floats are expected."""
    dtype = dtype_name(x)
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


def static_dim(dim):
    """A static dimension as an `int`, or None when it is unknown (None, or symbolic, as
    JAX's shape polymorphism makes them while Keras infers output shapes)."""
    return int(dim) if _is_int(dim) else None


def _compatible(a, b):
    a, b = static_dim(a), static_dim(b)
    return a is None or b is None or a == b


def shapes_match(shape, expected):
    """Whether two static shapes agree, `None` matching anything."""
    shape, expected = tuple(shape), tuple(expected)
    return len(shape) == len(expected) and all(map(_compatible, shape, expected))


def shape_message(name, shape, expected, expected_what):
    """The message of `same_shape` (also formatted by the checks inside a data pipeline)."""
    return (f"`{name}` must have the shape of {expected_what}, {expected}; received shape "
            f"{shape}.")


def same_shape(shape, expected, name, expected_what):
    """Static shapes: `shape` (of `name`) must equal `expected` (of `expected_what`), `None`
    matching anything."""
    shape, expected = tuple(shape), tuple(expected)
    if not shapes_match(shape, expected):
        raise ValueError(shape_message(name, shape, expected, expected_what))


def length_message(name, length, limit, limit_what):
    """The message of `length_at_most` (also formatted inside a data pipeline)."""
    return f"`{name}` has length {length}, longer than {limit_what} ({limit})."


def length_at_most(length, limit, name, limit_what):
    """A sequence length within `limit` (the positions a model has)."""
    length, limit = static_dim(length), static_dim(limit)
    if length is not None and limit is not None and length > limit:
        raise ValueError(length_message(name, int(length), int(limit), limit_what))


def ids_message(name, size, lo, hi, size_what="vocabulary_size"):
    """The message of `ids_in_range` (also formatted inside a data pipeline)."""
    return (f"`{name}` must hold ids in [0, {size}) ({size_what}={size}); received ids in "
            f"[{lo}, {hi}].")


def ids_in_range(values, size, name, size_what="vocabulary_size"):
    """Concrete integer ids must lie in `[0, size)`: out of range, a gather gives NaN on JAX
    and clamps or fails on TensorFlow."""
    values = np.asarray(values)
    if values.size == 0:
        return
    lo, hi = int(values.min()), int(values.max())
    if lo < 0 or hi >= int(size):
        raise ValueError(ids_message(name, int(size), lo, hi, size_what))
