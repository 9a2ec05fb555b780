"""Canonical Python forms of tokenizer inputs, with errors that name the argument.

Eager (Python-path) tokenizer calls accept a string, bytes, a list/tuple of them, or a rank-0/1
NumPy or TensorFlow string array; token-id inputs may be a list, a nested list, a NumPy, JAX or
TensorFlow integer array, or a `tf.RaggedTensor`.
"""

import numpy as np

try:  # TensorFlow is optional: only `tf.data` pipelines need it.
    import tensorflow as tf
except ImportError:  # pragma: no cover - exercised only without TF
    tf = None

STRING_EXPECTED = "a string or a 1-D batch (list, tuple or array) of strings"


def _decode(value, name, index=None):
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as e:
        where = f" (element {index})" if index is not None else ""
        raise ValueError(
            f"`{name}`{where} must be UTF-8 text; byte {e.start} cannot be decoded: {e.reason}."
        ) from None


def as_string(value, name, index=None):
    """Returns one Python string from str, bytes or a scalar NumPy/TF string; else raises."""
    if tf is not None and isinstance(value, tf.Tensor) and value.dtype == tf.string:
        value = value.numpy()
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if isinstance(value, (str, np.str_)):
        return str(value)
    if isinstance(value, (bytes, np.bytes_)):
        return _decode(bytes(value), name, index)
    where = f"element {index} of " if index is not None else ""
    raise TypeError(
        f"`{name}` must be {STRING_EXPECTED}; {where}`{name}` is "
        f"{type(value).__name__}: {value!r:.80}."
    )


def strings_to_list(inputs, name="inputs"):
    """Returns `(texts, batched)`: a list of Python strings and whether input was a batch."""
    if tf is not None and isinstance(inputs, tf.RaggedTensor):
        raise ValueError(f"`{name}` must be {STRING_EXPECTED}; received a ragged tensor.")
    if tf is not None and isinstance(inputs, tf.Tensor):
        if inputs.dtype != tf.string:
            raise TypeError(
                f"`{name}` must be {STRING_EXPECTED}; received dtype {inputs.dtype.name}."
            )
        inputs = inputs.numpy()
    if isinstance(inputs, np.ndarray):
        if inputs.ndim == 0:
            inputs = inputs.item()
        elif inputs.ndim == 1:
            inputs = inputs.tolist()
        else:
            raise ValueError(f"`{name}` must be {STRING_EXPECTED}; received shape {inputs.shape}.")
    if isinstance(inputs, (list, tuple)):
        return [as_string(x, name, i) for i, x in enumerate(inputs)], True
    return [as_string(inputs, name)], False


def _check_int_rows(rows, name):
    for row in rows:
        for value in row:
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
                raise TypeError(
                    f"`{name}` must hold integer token ids; found {type(value).__name__} {value!r}."
                )
    return [[int(v) for v in row] for row in rows]


def ids_to_lists(inputs, name="token_ids"):
    """Returns `(rows, batched)`: a list of lists of Python ints and whether input was a batch."""
    if inputs is None:
        raise TypeError(f"`{name}` must be a 1-D or 2-D sequence of integer ids; received None.")
    if tf is not None and isinstance(inputs, tf.RaggedTensor):
        return _check_int_rows(inputs.to_list(), name), True
    if not isinstance(inputs, (list, tuple)):
        array = np.asarray(inputs)
        if array.dtype.kind not in "iu":
            raise TypeError(f"`{name}` must hold integer token ids; received dtype {array.dtype}.")
        if array.ndim == 1:
            return [array.tolist()], False
        if array.ndim == 2:
            return array.tolist(), True
        raise ValueError(f"`{name}` must be 1-D or 2-D; received shape {array.shape}.")
    if len(inputs) == 0 or not hasattr(inputs[0], "__len__"):
        return _check_int_rows([list(inputs)], name), False
    return _check_int_rows([np.asarray(row).tolist() for row in inputs], name), True
