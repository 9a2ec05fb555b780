"""`Task`: a backbone, a preprocessor and a head, trained on raw inputs.

`fit`, `evaluate` and `predict` turn arrays of raw inputs into a `tf.data` pipeline, map the
preprocessor over it (in TensorFlow ops, on every backend) and hand the result to Keras, as
KerasHub's tasks do. With `preprocessor=None` they are Keras' own.
"""

import copy
import importlib

import keras
import numpy as np

from keras_unitscale import precision
from keras_unitscale._tasks import registered_tasks  # noqa: F401 (the tasks that declare)
from keras_unitscale.models.task_inputs import (
    _as_inputs,
    _as_slices,
    _check_fit_arguments,
    _has_strings,
    _is_dataset,
    _num_samples,
    _slice,
    _tf,
    check_model_inputs,
    check_raw_text,
    checked_inputs,
    pipeline_errors,
)
from keras_unitscale.models.unit_scaled_model import UnitScaledModel
from keras_unitscale.presets.mixin import PresetMixin



@keras.saving.register_keras_serializable(package="keras_unitscale")
def _bool_to_int(value):
    tf = _tf()  # runs inside `tf.data`: loaded
    if isinstance(value, tf.Tensor) and value.dtype == tf.bool:
        return tf.cast(value, "int32")
    return value


class LazyClass:
    """A class attribute that names a class by module and name and imports it on first access.

    The preprocessors import keras-hub (and TensorFlow), which `import keras_unitscale` does
    not; a task declares its `preprocessor_cls` with this.

    Example:
    >>> class Declares:
    ...     preprocessor_cls = LazyClass("keras_unitscale.preprocessors", "CausalLMPreprocessor")
    >>> Declares.preprocessor_cls.__name__
    'CausalLMPreprocessor'
    """

    def __init__(self, module, name):
        self.module, self.name = module, name

    def __get__(self, instance, owner):
        return getattr(importlib.import_module(self.module), self.name)


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

    # What the task is, declared once (KerasHub's pairing). Presets, export and the CLI read
    # these; none of them names a task class. A task that sets `preprocessor_cls` is listed
    # by `registered_tasks()`.
    backbone_cls = ()
    """The backbone classes the task is built on (a tuple)."""
    preprocessor_cls = None
    """The preprocessor class that turns its raw inputs into the backbone's (a `LazyClass`)."""
    text_inputs = {"text": "tokenizer"}
    """Its raw-text inputs, in order, each with the preprocessor's attribute holding its
    tokenizer. With one, raw inputs are a batch of strings; with several, a dict of them."""
    serving_outputs = ("logits",)
    """What its exported model signatures return (names in `keras_unitscale.export.spec`)."""
    data_columns = {"text": "text"}
    """How a data file is read (`keras-unitscale train/evaluate`): each text input's column,
    by the name of the command's `--<name>-column` option."""
    label_column = None
    """The column of its targets in a data file (its `--<name>-column` option), or None when
    the targets come from the text."""
    architecture_backbones = {}
    """`{stored backbone class: (class built, extra arguments)}`: an untrained architecture
    preset's backbone, as this task builds it from the same sizes (default: as stored)."""
    command = None
    """The `keras-unitscale` command that runs a preset of this task (`predict`, ...)."""

    @classmethod
    def preprocessor_for(cls, tokenizers, sequence_length):
        """A new `preprocessor_cls` over `tokenizers` (one per text input, in order), each
        text packed to `sequence_length` tokens.

        Example:
        >>> import keras_unitscale as ku
        >>> from keras_unitscale.tokenizers import CharacterTokenizer
        >>> preprocessor = ku.models.TextClassifier.preprocessor_for(
        ...     [CharacterTokenizer.from_corpus(["很好"])], 8)
        >>> type(preprocessor).__name__, preprocessor.sequence_length
        ('TextClassifierPreprocessor', 8)
        """
        return cls.preprocessor_cls(*tokenizers, *[sequence_length] * len(tokenizers))

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
        if sample_weight is not None and _num_samples(sample_weight) != n:
            raise ValueError(
                f"`sample_weight` must have one weight per sample of `x`; received "
                f"{_num_samples(sample_weight)} weights for {n} samples."
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
            x = checked_inputs(self.backbone, x, "x")
            if isinstance(validation_data, tuple) and validation_data:
                check_model_inputs(self.backbone, validation_data[0], "validation_data[0]")
            else:
                validation_data = checked_inputs(self.backbone, validation_data,
                                                 "validation_data")
            if y is not None and not _is_dataset(x):
                self.check_targets(y)
            with pipeline_errors(self):
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
        with pipeline_errors(self):
            return super().fit(train, validation_data=validation_data, shuffle=False, **kwargs)

    def evaluate(self, x=None, y=None, batch_size=None, sample_weight=None, **kwargs):
        _check_fit_arguments(batch_size, None, None)
        x, y, sample_weight = _as_inputs(x), _as_inputs(y), _as_inputs(sample_weight)
        if self.preprocessor is None or kwargs.get("_use_cached_eval_dataset", False):
            if not kwargs.get("_use_cached_eval_dataset", False):
                x = checked_inputs(self.backbone, x, "x")
            if y is not None and not _is_dataset(x):
                self.check_targets(y)
            with pipeline_errors(self):
                return super().evaluate(x, y, batch_size=batch_size,
                                        sample_weight=sample_weight, **kwargs)
        with pipeline_errors(self):
            return super().evaluate(self._dataset(x, y, sample_weight, batch_size), **kwargs)

    def predict(self, x, batch_size=None, **kwargs):
        _check_fit_arguments(batch_size, None, None)
        x = _as_inputs(x)
        if self.preprocessor is None:
            x = checked_inputs(self.backbone, x, "x")
            with pipeline_errors(self):
                return super().predict(x, batch_size=batch_size, **kwargs)
        with pipeline_errors(self):
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
