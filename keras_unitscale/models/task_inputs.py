"""What enters a `Task`: raw inputs as users give them (one string, Python lists, datasets)
and the checks made on them, on concrete (NumPy) values, before any compiled function runs.
"""

import sys

import keras
import numpy as np

from keras_unitscale import _validation as check
from keras_unitscale.backend import concrete_value


def _tf():
    """TensorFlow, which runs the input pipeline on every backend; imported on first use
    (`import keras_unitscale` on JAX does not load it). None when it is not installed."""
    try:
        import tensorflow as tf
    except ImportError:  # pragma: no cover
        return None
    return tf


def _is_dataset(x):
    # Without TensorFlow imported, nothing can be a `tf.data.Dataset`.
    return "tensorflow" in sys.modules and isinstance(x, _tf().data.Dataset)


def _has_strings(x):
    for leaf in keras.tree.flatten(x):
        if isinstance(leaf, (str, bytes)):
            return True
        dtype = getattr(leaf, "dtype", None)
        kind = getattr(dtype, "kind", None)
        if (isinstance(kind, str) and kind in "USO") or "string" in str(dtype):
            return True
    return False


def _as_inputs(x):
    """Inputs as users give them: one string is a batch of one; a Python list of numbers
    (labels, weights) is an array."""
    if isinstance(x, (str, bytes)):
        return [x]
    if isinstance(x, list) and x and not any(isinstance(v, (str, bytes)) for v in x):
        if all(isinstance(v, (int, float, bool, np.number, list, tuple)) for v in x):
            try:
                return np.asarray(x)
            except ValueError:  # ragged nested lists: leave them to the checks below
                return x
    return x


def _num_samples(x):
    if isinstance(x, (list, tuple)) and not x:
        return 0
    leaves = [leaf for leaf in keras.tree.flatten(x) if leaf is not None]
    if isinstance(x, (list, tuple)) and all(isinstance(v, (str, bytes)) for v in x):
        return len(x)  # A list of strings is one input, not a structure.
    sizes = {len(leaf) if hasattr(leaf, "__len__") else int(leaf.shape[0]) for leaf in leaves}
    return min(sizes) if sizes else 0


def _slice(x, start, stop):
    if isinstance(x, (list, tuple)) and all(isinstance(v, (str, bytes)) for v in x):
        return x[start:stop]
    return keras.tree.map_structure(lambda leaf: None if leaf is None else leaf[start:stop], x)


def _as_slices(x):
    # `from_tensor_slices` reads a list as one tensor; `keras.tree` would split it.
    if isinstance(x, list):
        return _tf().constant(x) if x and isinstance(x[0], (str, bytes)) else x
    return x


# Checks of what enters a task: on concrete (NumPy) values, before any compiled function ----
def _concrete(value):
    """`value` as a NumPy array when it holds concrete values, else None (symbolic, traced,
    or not array-like)."""
    if value is None or _is_dataset(value):
        return None
    if isinstance(value, (list, tuple)):
        try:
            return np.asarray(value)
        except ValueError:  # ragged
            return None
    try:
        return concrete_value(value) if hasattr(value, "dtype") else None
    except Exception:  # pragma: no cover - an unusual tensor type
        return None


def input_vocabulary_size(backbone, key):
    if key.startswith("decoder") and getattr(backbone, "decoder_vocabulary_size", None):
        return backbone.decoder_vocabulary_size
    return getattr(backbone, "vocabulary_size", None)


def check_model_inputs(backbone, x, argument="x"):
    """Checks packed inputs given for `backbone` (what a preprocessor would make) before
    they reach a compiled function, where bad values are not caught: a dict with the
    backbone's input names; token ids of an integer dtype within the vocabulary (out of
    range, a gather gives NaN on JAX and clamps on TensorFlow); padding masks of their token
    ids' shape; sequences no longer than the backbone's `max_sequence_length`. `argument`
    is the name the user passed `x` under. Symbolic or traced values are left alone."""
    try:
        inputs = backbone.input
    except (AttributeError, ValueError):
        return
    if not isinstance(inputs, dict) or x is None or _is_dataset(x):
        return
    names = sorted(inputs)
    if not isinstance(x, dict):
        if _concrete(x) is not None:
            raise ValueError(
                f"`{argument}` must be a dict of {names} (the packed inputs the backbone "
                f"takes), or raw inputs for a task with a preprocessor; received "
                f"{type(x).__name__}: {x!r:.60}."
            )
        return
    missing = [name for name in names if name not in x]
    if missing:
        raise ValueError(
            f"`{argument}` must have the keys {names}; it lacks {missing} (received keys "
            f"{sorted(map(str, x))})."
        )
    values = {name: _concrete(x[name]) for name in names}
    limit = getattr(backbone, "max_sequence_length", None)
    for name in sorted(names, key=lambda n: not n.endswith("token_ids")):
        value, spec, label = values[name], inputs[name], f'{argument}["{name}"]'
        if value is None:
            continue
        if value.ndim != len(spec.shape):
            raise ValueError(
                f"`{label}` must have rank {len(spec.shape)} ([batch, length]); received "
                f"shape {value.shape}."
            )
        if name.endswith("token_ids"):
            check.integer_dtype(value, label)
            size = input_vocabulary_size(backbone, name)
            if size is not None:
                check.ids_in_range(value, size, label)
        if name.endswith("padding_mask"):
            ids = values.get(name.replace("padding_mask", "token_ids"))
            if ids is not None:
                check.same_shape(value.shape, ids.shape, label,
                                 f'`{argument}["{name.replace("padding_mask", "token_ids")}"]`')
        if value.ndim >= 2 and limit is not None:
            check.length_at_most(value.shape[1], limit, label,
                                 "the backbone's max_sequence_length")


def check_preprocessor(backbone, preprocessor):
    """A task's preprocessor must fit its backbone: sequences within the backbone's
    positions, token ids within its vocabulary (when the tokenizer's is already set)."""
    if preprocessor is None:
        return
    limit = getattr(backbone, "max_sequence_length", None)
    for attr in ("sequence_length", "encoder_sequence_length", "decoder_sequence_length"):
        length = getattr(preprocessor, attr, None)
        if limit is not None and length is not None and length > limit:
            raise ValueError(
                f"`preprocessor`'s {attr} ({length}) exceeds the backbone's "
                f"max_sequence_length ({limit}): its sequences would not fit the position "
                f"embedding. Give the preprocessor {attr}<={limit} or build the backbone "
                "with more positions."
            )
    for attr, key in (("tokenizer", "token_ids"), ("decoder_tokenizer", "decoder_token_ids")):
        tokenizer = getattr(preprocessor, attr, None)
        size = input_vocabulary_size(backbone, key)
        try:
            have = int(tokenizer.vocabulary_size())
        except Exception:  # no tokenizer, or its vocabulary is still loading
            continue
        if size is not None and have > size:
            raise ValueError(
                f"`preprocessor`'s {attr} has {have} tokens, more than the backbone's "
                f"vocabulary_size ({size}): its ids would fall outside the embedding."
            )


def check_raw_text(x, argument="x"):
    """Raw inputs for a text preprocessor: strings (or a dict of them), not ids or None."""
    if x is None or _is_dataset(x):
        return
    leaves = list(x.values()) if isinstance(x, dict) else [x]
    for leaf in leaves:
        if isinstance(leaf, (str, bytes)):
            continue
        if isinstance(leaf, np.ndarray):
            if leaf.dtype.kind in "SU" or leaf.dtype.kind == "O" and all(
                isinstance(v, (str, bytes)) for v in leaf.ravel()
            ):
                continue
            raise ValueError(
                f"`{argument}` must be raw text (strings) for this task's preprocessor; "
                f"received an array of dtype {leaf.dtype}. To feed token ids, set "
                "`task.preprocessor = None` and pass a dict of packed inputs."
            )
        if isinstance(leaf, (list, tuple)):
            for i, value in enumerate(leaf):
                if not isinstance(value, (str, bytes)):
                    raise ValueError(
                        f"`{argument}` must hold strings for this task's preprocessor; "
                        f"element {i} is {type(value).__name__}: {value!r:.60}."
                    )


def _check_fit_arguments(batch_size, validation_split, epochs):
    if batch_size is not None:
        check.positive_int(batch_size, "batch_size")
    if validation_split not in (None, 0, 0.0):
        check.open_fraction(validation_split, "validation_split")
    if epochs is not None:
        check.positive_int(epochs, "epochs")
