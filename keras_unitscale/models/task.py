"""`Task`: a backbone, a preprocessor and a head, trained on raw inputs.

`fit`, `evaluate` and `predict` turn arrays of raw inputs into a `tf.data` pipeline, map the
preprocessor over it (in TensorFlow ops, on every backend) and hand the result to Keras, as
KerasHub's tasks do. With `preprocessor=None` they are Keras' own.
"""

import copy
import sys

import keras
import numpy as np

from keras_unitscale import _validation as check
from keras_unitscale import precision
from keras_unitscale.backend import concrete_value
from keras_unitscale.models.unit_scaled_model import UnitScaledModel
from keras_unitscale.presets.mixin import PresetMixin


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


@keras.saving.register_keras_serializable(package="keras_unitscale")
def _bool_to_int(value):
    tf = _tf()  # runs inside `tf.data`: loaded
    if isinstance(value, tf.Tensor) and value.dtype == tf.bool:
        return tf.cast(value, "int32")
    return value


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


class Task(PresetMixin, UnitScaledModel):
    """Base class of the task models: `backbone` + `preprocessor` + a head.

    A subclass sets `self.backbone` and `self.preprocessor`, builds its head on
    `backbone.input` and calls `super().__init__(inputs=..., outputs=...)`. Then:

    - `fit`, `evaluate` and `predict` accept raw inputs (arrays or lists of strings, or a
      batched `tf.data.Dataset` of them, with labels) and apply `preprocessor` inside the
      input pipeline. Arrays are shuffled each epoch when `fit(shuffle=True)` (the default).
      Set `task.preprocessor = None` to feed preprocessed inputs instead.
    - `get_config` holds the serialised backbone and preprocessor, so a `.keras` file
      restores the whole pipeline, tokenizer vocabulary included (saved as an asset).
    - `from_preset` and `save_to_preset` come from `keras_unitscale.presets.PresetMixin`.

    Args:
        **kwargs: `inputs`, `outputs`, `name` for the functional model.

    Example:
    >>> import keras, numpy as np
    >>> import keras_unitscale as ku
    >>> class Tagger(ku.models.Task):
    ...     def __init__(self, backbone, preprocessor=None, **kwargs):
    ...         self.backbone, self.preprocessor = backbone, preprocessor
    ...         logits = ku.layers.Dense(3, readout=True)(backbone(backbone.input))
    ...         super().__init__(inputs=backbone.input, outputs=logits, **kwargs)
    >>> tagger = Tagger(ku.models.LSTMBackbone(vocabulary_size=50, hidden_dim=8))
    >>> tagger.compile()
    >>> x = {"token_ids": np.ones((4, 5), "int32"), "padding_mask": np.ones((4, 5), "int32")}
    >>> tagger.predict(x, verbose=0).shape
    (4, 5, 3)
    """

    @property
    def backbone(self):
        """The `Backbone` holding the architecture."""
        return getattr(self, "_backbone", None)

    @backbone.setter
    def backbone(self, value):
        self._backbone = value

    @property
    def preprocessor(self):
        """The preprocessor applied to raw inputs in `fit`/`evaluate`/`predict`, or None."""
        return getattr(self, "_preprocessor", None)

    @preprocessor.setter
    def preprocessor(self, value):
        self._preprocessor = value

    @property
    def layers(self):
        # The preprocessor is not part of the graph: keep it out of `summary()`.
        return [layer for layer in super().layers if layer is not self.preprocessor]

    def __call__(self, *args, **kwargs):
        inputs = args[0] if args else kwargs.get("inputs")
        if _has_strings(inputs):
            raise ValueError(
                f"{type(self).__name__} received strings. Calling the model does not "
                "preprocess: use `predict(x)` (or `fit`/`evaluate`), or call "
                "`model(model.preprocessor(x))`."
            )
        if isinstance(inputs, dict) and self.backbone is not None:
            check_model_inputs(self.backbone, inputs, "inputs")
        return super().__call__(*args, **kwargs)

    # Input pipeline ---------------------------------------------------------------------
    def preprocess_samples(self, x, y=None, sample_weight=None):
        """Maps one batch of raw samples to model inputs (runs inside `tf.data`).

        Boolean inputs (the preprocessors' padding masks) leave as int32: under a
        `tf.distribute` strategy Keras reduces the first batch across replicas to build the
        model, and TensorFlow cannot sum booleans. The backbones take either dtype.
        """
        if self.preprocessor is not None:
            x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(
                self.preprocessor(x, y=y, sample_weight=sample_weight)
            )
        x = keras.tree.map_structure(_bool_to_int, x)
        return keras.utils.pack_x_y_sample_weight(x, y, sample_weight)

    def check_targets(self, y):
        """Hook for subclasses: raise a `ValueError` for unusable targets (arrays or specs)."""

    def _dataset(self, x, y, sample_weight, batch_size, shuffle=False):
        tf = _tf()
        if tf is None:  # pragma: no cover
            raise ImportError("Preprocessing inside `fit` needs TensorFlow's `tf.data`.")
        if _is_dataset(x):
            for name, value in (("y", y), ("sample_weight", sample_weight),
                                ("batch_size", batch_size)):
                if value is not None:
                    raise ValueError(
                        f"When `x` is a `tf.data.Dataset`, do not pass `{name}`; the dataset "
                        f"yields batches of `(x, y, sample_weight)`. Received {name}={value!r:.60}."
                    )
            spec = x.element_spec
            if isinstance(spec, tuple) and len(spec) > 1:
                self.check_targets(spec[1])
            return x.map(self.preprocess_samples, num_parallel_calls=tf.data.AUTOTUNE).prefetch(
                tf.data.AUTOTUNE
            )
        if x is None:
            raise ValueError("`x` must be given: raw inputs or a `tf.data.Dataset`.")
        if getattr(self.preprocessor, "tokenizer", None) is not None:
            check_raw_text(x, "x")
        n = _num_samples(x)
        if n == 0:
            raise ValueError(f"`x` is empty: there is nothing to process. Received x={x!r:.60}.")
        if y is not None:
            self.check_targets(y)
            if _num_samples(y) != n:
                raise ValueError(
                    f"`x` and `y` must have the same number of samples; received {n} and "
                    f"{_num_samples(y)}."
                )
        data = keras.utils.pack_x_y_sample_weight(
            _as_slices(x), None if y is None else _as_slices(y),
            None if sample_weight is None else _as_slices(sample_weight),
        )
        ds = tf.data.Dataset.from_tensor_slices(data)
        if shuffle:
            ds = ds.shuffle(n, reshuffle_each_iteration=True)
        ds = ds.batch(batch_size or 32)
        return ds.map(self.preprocess_samples, num_parallel_calls=tf.data.AUTOTUNE).prefetch(
            tf.data.AUTOTUNE
        )

    def fit(self, x=None, y=None, batch_size=None, sample_weight=None, validation_data=None,
            validation_split=0.0, shuffle=True, **kwargs):
        _check_fit_arguments(batch_size, validation_split, kwargs.get("epochs"))
        x, y, sample_weight = _as_inputs(x), _as_inputs(y), _as_inputs(sample_weight)
        if isinstance(validation_data, (list, tuple)):
            validation_data = tuple(_as_inputs(v) for v in validation_data)
        if self.preprocessor is None:
            check_model_inputs(self.backbone, x, "x")
            if isinstance(validation_data, tuple) and validation_data:
                check_model_inputs(self.backbone, validation_data[0], "validation_data[0]")
            if y is not None and not _is_dataset(x):
                self.check_targets(y)
            return super().fit(x, y, batch_size=batch_size, sample_weight=sample_weight,
                               validation_data=validation_data,
                               validation_split=validation_split, shuffle=shuffle, **kwargs)
        if validation_split and validation_data is None:
            if _is_dataset(x):
                raise ValueError("`validation_split` needs arrays, not a `tf.data.Dataset`.")
            # As Keras: the last fraction of the samples, before any shuffling.
            n = _num_samples(x)
            cut = int(n * (1.0 - validation_split))
            if cut in (0, n):
                raise ValueError(
                    f"`validation_split={validation_split}` leaves no samples on one side of "
                    f"the split of {n} samples."
                )
            parts = [(v, None if v is None else (_slice(v, 0, cut), _slice(v, cut, n)))
                     for v in (x, y, sample_weight)]
            (x, y, sample_weight) = [None if p is None else p[0] for _, p in parts]
            validation_data = tuple(p[1] for _, p in parts if p is not None)
        train = self._dataset(x, y, sample_weight, batch_size, shuffle=shuffle)
        if validation_data is not None:
            if _is_dataset(validation_data):
                validation_data = self._dataset(validation_data, None, None, None)
            else:
                vx, vy, vw = keras.utils.unpack_x_y_sample_weight(tuple(validation_data))
                validation_data = self._dataset(vx, vy, vw, batch_size)
        # Shuffling, if asked, happened in the pipeline (Keras ignores it for datasets).
        return super().fit(train, validation_data=validation_data, shuffle=False, **kwargs)

    def evaluate(self, x=None, y=None, batch_size=None, sample_weight=None, **kwargs):
        _check_fit_arguments(batch_size, None, None)
        x, y, sample_weight = _as_inputs(x), _as_inputs(y), _as_inputs(sample_weight)
        if self.preprocessor is None or kwargs.get("_use_cached_eval_dataset", False):
            check_model_inputs(self.backbone, x, "x")
            if y is not None and not _is_dataset(x):
                self.check_targets(y)
            return super().evaluate(x, y, batch_size=batch_size, sample_weight=sample_weight,
                                    **kwargs)
        return super().evaluate(self._dataset(x, y, sample_weight, batch_size), **kwargs)

    def predict(self, x, batch_size=None, **kwargs):
        _check_fit_arguments(batch_size, None, None)
        x = _as_inputs(x)
        if self.preprocessor is None:
            check_model_inputs(self.backbone, x, "x")
            return super().predict(x, batch_size=batch_size, **kwargs)
        return super().predict(self._dataset(x, None, None, batch_size), **kwargs)

    # Config -----------------------------------------------------------------------------
    def get_config(self):
        # Not the functional graph: the constructor's arguments, as KerasHub's tasks.
        # The backbone's config records its own quantised layers; the head's are here.
        from keras_unitscale.quantization import modes

        config = {
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "preprocessor": keras.saving.serialize_keras_object(self.preprocessor),
            "name": self.name,
        }
        record = modes.quantized_layers(self, skip=(self.backbone, self.preprocessor))
        if record:
            config[modes.RECORD_KEY] = record
        fp8 = precision.fp8_record(self, skip=(self.backbone, self.preprocessor))
        if fp8:
            config[precision.RECORD_KEY] = fp8
        return config

    @classmethod
    def from_config(cls, config):
        from keras_unitscale.quantization import modes

        config = dict(config)
        record = config.pop(modes.RECORD_KEY, None)
        fp8 = config.pop(precision.RECORD_KEY, None)
        for key in ("backbone", "preprocessor"):
            if isinstance(config.get(key), dict):
                # A copy: KerasHub's `from_config`s replace nested configs by objects in place.
                config[key] = keras.saving.deserialize_keras_object(copy.deepcopy(config[key]))
        task = cls(**config)
        modes.restore_quantization(task, record, skip=(task.backbone, task.preprocessor))
        return precision.restore_fp8(task, fp8, skip=(task.backbone, task.preprocessor))

    # Serving ----------------------------------------------------------------------------
    def export(self, path, version=1, overwrite=False, verbose=False):
        """Writes a SavedModel for TF Serving at `path/<version>/` and returns that directory.

        Raw text in (`serving_default`, preprocessing in the graph), the model's own inputs
        (`token_ids`), greedy decoding for language models (`generate`); from the TensorFlow
        or the JAX backend. See `keras_unitscale.export.export_task` and `docs/serving.md`.

        Example:
        >>> import os, tempfile
        >>> import keras_unitscale as ku
        >>> backbone = ku.models.LSTMBackbone(vocabulary_size=20, hidden_dim=4)
        >>> classifier = ku.models.TextClassifier(backbone, num_classes=2)
        >>> base = tempfile.mkdtemp()
        >>> directory = classifier.export(base, version=3)
        >>> os.path.relpath(directory, base), sorted(os.listdir(directory))[-2:]
        ('3', ['saved_model.pb', 'variables'])
        """
        from keras_unitscale.export import export_task

        return export_task(self, path, version=version, overwrite=overwrite, verbose=verbose)
