"""What enters a `Task`: raw inputs as users give them (one string, Python lists, datasets)
and the checks made on them, on concrete (NumPy) values, before any compiled function runs.
"""

import contextlib
import inspect
import sys

import keras
import numpy as np

from keras_unitscale import _validation as check
from keras_unitscale.backend import concrete_value
from keras_unitscale.backend.trainer_state import variables_kept_on_failure


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


def _is_spec(value):
    return "tensorflow" in sys.modules and isinstance(value, _tf().TensorSpec)


def _described(value):
    """`(shape, dtype holder, NumPy values or None)` of one input: concrete values, or the
    `tf.TensorSpec` of a dataset's elements (shape and dtype only); None when neither."""
    if _is_spec(value):
        return None if value.shape.rank is None else (tuple(value.shape.as_list()), value, None)
    array = _concrete(value)
    return None if array is None else (array.shape, array, array)


def _backbone_inputs(backbone):
    try:
        inputs = backbone.input
    except (AttributeError, ValueError):
        return None
    return inputs if isinstance(inputs, dict) else None


def check_model_inputs(backbone, x, argument="x"):
    """Checks packed inputs given for `backbone` (what a preprocessor would make) before
    they reach a compiled function, where bad values are not caught: a dict with the
    backbone's input names; token ids of an integer dtype within the vocabulary (out of
    range, a gather gives NaN on JAX and clamps on TensorFlow); padding masks of their token
    ids' shape; sequences no longer than the backbone's `max_sequence_length`. `argument`
    is the name the user passed `x` under. Symbolic or traced values are left alone; the
    `tf.TensorSpec`s of a dataset's elements get the checks their static shapes and dtypes
    allow (`checked_inputs` checks the values as the batches are read)."""
    inputs = _backbone_inputs(backbone)
    if inputs is None or x is None or _is_dataset(x):
        return
    names = sorted(inputs)
    if not isinstance(x, dict):
        if _is_spec(x) or _concrete(x) is not None:
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
    described = {name: _described(x[name]) for name in names}
    limit = getattr(backbone, "max_sequence_length", None)
    for name in sorted(names, key=lambda n: not n.endswith("token_ids")):
        if described[name] is None:
            continue
        (shape, source, values), label = described[name], f'{argument}["{name}"]'
        if len(shape) != len(inputs[name].shape):
            raise ValueError(
                f"`{label}` must have rank {len(inputs[name].shape)} ([batch, length]); "
                f"received shape {shape}."
            )
        if name.endswith("token_ids"):
            check.integer_dtype(source, label)
            size = input_vocabulary_size(backbone, name)
            if size is not None and values is not None:
                check.ids_in_range(values, size, label)
        if name.endswith("padding_mask"):
            ids_name = name.replace("padding_mask", "token_ids")
            if described.get(ids_name) is not None:
                check.same_shape(shape, described[ids_name][0], label,
                                 f'`{argument}["{ids_name}"]`')
        if len(shape) >= 2 and limit is not None:
            check.length_at_most(shape[1], limit, label, "the backbone's max_sequence_length")


# Batches read from a pipeline (tf.data, a generator, a PyDataset) -------------------------
# A check inside `tf.data` can only fail with TensorFlow's `InvalidArgumentError`; its message
# goes between these marks, and `pipeline_errors` raises it as the `ValueError` it stands for.
_MARKS = ("<<keras_unitscale: ", " :keras_unitscale>>")


def _pipeline_check(backbone, argument):
    """A function of one batch's packed inputs (a dict of tensors, inside `tf.data`) that
    fails, with the messages of `check_model_inputs`, on what only values reveal: ids
    outside the vocabulary, masks of another shape than their ids, sequences too long."""
    tf = _tf()
    names = sorted(_backbone_inputs(backbone))
    limit = getattr(backbone, "max_sequence_length", None)

    def fail_unless(condition, template, values):
        message = tf.strings.format(template, values, summarize=-1)
        return tf.debugging.Assert(condition, [_MARKS[0] + message + _MARKS[1]])

    def checked(x):
        asserts = []
        for name in names:
            value, label = x[name], f'{argument}["{name}"]'
            if name.endswith("token_ids") and input_vocabulary_size(backbone, name):
                size = int(input_vocabulary_size(backbone, name))
                ids = tf.reshape(tf.cast(value, tf.int64), [-1])
                lo, hi = tf.reduce_min(ids), tf.reduce_max(ids)
                inside = tf.logical_or(tf.equal(tf.size(ids), 0),
                                       tf.logical_and(lo >= 0, hi < size))
                asserts.append(fail_unless(inside, check.ids_message(label, size, "{}", "{}"),
                                           (lo, hi)))
            ids_name = name.replace("padding_mask", "token_ids")
            if name.endswith("padding_mask") and ids_name in x:
                same = tf.reduce_all(tf.equal(tf.shape(value), tf.shape(x[ids_name])))
                asserts.append(fail_unless(same, check.shape_message(
                    label, "{}", "{}", f'`{argument}["{ids_name}"]`'),
                    (tf.shape(x[ids_name]), tf.shape(value))))
            if (limit is not None and name.endswith("token_ids") and value.shape.rank is not None
                    and value.shape.rank >= 2):
                length = tf.shape(value)[1]
                asserts.append(fail_unless(length <= int(limit), check.length_message(
                    label, "{}", int(limit), "the backbone's max_sequence_length"), (length,)))
        with tf.control_dependencies(asserts):
            return {**x, **{name: tf.identity(x[name]) for name in names}}

    return checked


def _x_of(batch):
    return batch[0] if isinstance(batch, tuple) else batch


class _CheckedPyDataset(keras.utils.PyDataset):
    """A `PyDataset` whose batches are checked (`check_model_inputs`) as they are read."""

    def __init__(self, data, backbone, argument):
        super().__init__(workers=data.workers, use_multiprocessing=data.use_multiprocessing,
                         max_queue_size=data.max_queue_size)
        self._data, self._backbone, self._argument = data, backbone, argument

    def __getitem__(self, index):
        batch = self._data[index]
        check_model_inputs(self._backbone, _x_of(batch), self._argument)
        return batch

    @property
    def num_batches(self):
        return self._data.num_batches

    def on_epoch_begin(self):
        self._data.on_epoch_begin()

    def on_epoch_end(self):
        self._data.on_epoch_end()


def _checked_generator(generator, backbone, argument):
    for batch in generator:
        check_model_inputs(backbone, _x_of(batch), argument)
        yield batch


def checked_inputs(backbone, x, argument="x"):
    """`x` for `backbone`, checked by `check_model_inputs`: concrete values now; a
    `tf.data.Dataset`, a Python generator or a `keras.utils.PyDataset` of packed batches
    (`x`, or tuples `(x, y[, sample_weight])`) now as far as their types and static shapes
    go, and batch by batch as they are read (returned wrapped: a dataset mapped through
    TensorFlow checks, the others checked in Python). Run the model under `pipeline_errors`
    so that a dataset's failed check is the `ValueError` it stands for."""
    if _backbone_inputs(backbone) is None or x is None:
        return x
    if _is_dataset(x):
        spec = x.element_spec
        check_model_inputs(backbone, _x_of(spec), argument)
        if not isinstance(_x_of(spec), dict):
            return x
        check_batch = _pipeline_check(backbone, argument)
        if isinstance(spec, tuple):
            return x.map(lambda *batch: (check_batch(batch[0]),) + tuple(batch[1:]))
        return x.map(check_batch)
    if inspect.isgenerator(x):
        return _checked_generator(x, backbone, argument)
    if isinstance(x, keras.utils.PyDataset):
        return _CheckedPyDataset(x, backbone, argument)
    check_model_inputs(backbone, x, argument)
    return x


@contextlib.contextmanager
def pipeline_errors(model):
    """Runs `model`'s `fit`, `evaluate` or `predict`: a check that failed inside `tf.data`
    (`_pipeline_check`) is raised as the `ValueError` it stands for, not as TensorFlow's
    `InvalidArgumentError` with its graph trace, and a failure leaves the model usable
    (`backend.trainer_state`)."""
    try:
        with variables_kept_on_failure(model):
            yield
    except Exception as error:
        text = str(error)
        if type(error).__name__ != "InvalidArgumentError" or _MARKS[0] not in text:
            raise
        message = text.split(_MARKS[0], 1)[1].split(_MARKS[1], 1)[0]
        raise ValueError(message.replace("\\'", "'").replace('\\"', '"')) from None


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
            if leaf.dtype.kind in "SU":
                continue
            if leaf.dtype.kind == "O":
                for i, value in enumerate(leaf.ravel()):
                    if not isinstance(value, (str, bytes)):
                        raise ValueError(
                            f"`{argument}` must hold strings for this task's preprocessor; "
                            f"element {i} is {type(value).__name__}: {value!r:.60}."
                        )
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
