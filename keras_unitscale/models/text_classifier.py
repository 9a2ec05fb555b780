"""`TextClassifier`: a backbone, a preprocessor and a unit-scaled classification head."""

import keras
import numpy as np

from keras_unitscale import layers
from keras_unitscale._validation import positive_int, positive_number
from keras_unitscale.layers.heads import (  # noqa: F401 (re-exported: their old home)
    POOLINGS,
    OutputMultiplier,
    SequencePooling,
)
from keras_unitscale.models.backbones import LSTMBackbone, TransformerEncoderBackbone
from keras_unitscale.models.task import LazyClass, Task
from keras_unitscale.models.task_inputs import check_preprocessor
from keras_unitscale.ops.dropout import validate_rate

def _labels(y):
    """`(numpy dtype, values or None)` of labels: an array, a list, a tensor or a tf spec."""
    dtype = getattr(y, "dtype", None)
    if dtype is None:  # a list
        values = np.asarray(y)
        return values.dtype, values
    if hasattr(dtype, "as_numpy_dtype"):  # TensorFlow: a tensor, or a dataset's spec
        numpy_dtype = np.dtype("O") if dtype.name == "string" else np.dtype(dtype.as_numpy_dtype)
        return numpy_dtype, y.numpy() if hasattr(y, "numpy") else None
    if not isinstance(dtype, np.dtype):  # a JAX or Keras dtype
        dtype = np.dtype(keras.backend.standardize_dtype(dtype))
    return dtype, np.asarray(y)


@keras.saving.register_keras_serializable(package="keras_unitscale")
class TextClassifier(Task):
    """Text classification: `backbone` + `preprocessor` + a unit-scaled readout.

    The backbone's hidden states are pooled over the real tokens (`pooling`), passed through
    unit-scaled dropout and a `keras_unitscale.layers.Dense(num_classes, readout=True)` (u-muP's
    readout rule, `1 / fan_in`), which gives logits. With a preprocessor, `fit`, `evaluate` and
    `predict` take raw strings (and integer labels in `[0, num_classes)`); the preprocessor
    runs inside the `tf.data` input pipeline. `compile()` is called on construction with the
    defaults below; call it again to change them.

    Args:
        backbone: a `keras_unitscale.models.Backbone` taking `{"token_ids", "padding_mask"}`.
        num_classes: number of classes.
        preprocessor: a `keras_unitscale.preprocessors.TextClassifierPreprocessor`, or None
            to feed token ids and padding masks yourself.
        pooling: `"mean"` (default), `"max"`, `"first"` or `"last"`; see `SequencePooling`.
        dropout: rate of the unit-scaled dropout before the readout.
        output_mult: u-muP's output multiplier: the logits are multiplied by it in the
            forward pass (their gradient stays unit-scaled). At 1 they start with std
            `hidden ** -0.5`; a larger value lets them grow faster under a global step size.
        label_names: optional names of the `num_classes` classes, in class-id order; kept in
            the config and presets, and used by the `keras-unitscale predict` command and by
            `predict_labels`.
        **kwargs: `name`.

    Example:
    >>> import numpy as np
    >>> import keras_unitscale as ku
    >>> from keras_unitscale.preprocessors import TextClassifierPreprocessor
    >>> from keras_unitscale.tokenizers import JiebaTokenizer
    >>> texts = ["这本书很好", "质量太差了", "很好很喜欢", "太差了不推荐"]
    >>> labels = np.array([1, 0, 1, 0])
    >>> tokenizer = JiebaTokenizer.from_corpus(texts)
    >>> preprocessor = TextClassifierPreprocessor(tokenizer, sequence_length=8)
    >>> backbone = ku.models.LSTMBackbone(tokenizer.vocabulary_size(), hidden_dim=16)
    >>> classifier = ku.models.TextClassifier(backbone, num_classes=2, preprocessor=preprocessor)
    >>> _ = classifier.fit(texts, labels, epochs=1, verbose=0)
    >>> classifier.predict(["这本书很好", "太差了"], verbose=0).shape
    (2, 2)
    """

    backbone_cls = (TransformerEncoderBackbone, LSTMBackbone)
    preprocessor_cls = LazyClass("keras_unitscale.preprocessors", "TextClassifierPreprocessor")
    text_inputs = {"text": "tokenizer"}
    serving_outputs = ("logits", "probabilities", "label")
    data_columns = {"text": "text"}
    label_column = "label"
    command = "predict"

    def __init__(self, backbone, num_classes, preprocessor=None, pooling="mean",
                 dropout=0.0, output_mult=1.0, label_names=None, **kwargs):
        try:
            inputs = backbone.input
        except (AttributeError, ValueError):  # not a model, or one never called
            inputs = None
        if not isinstance(backbone, keras.Model) or not isinstance(inputs, dict) or (
            "padding_mask" not in inputs
        ):
            raise ValueError(
                "`backbone` must be a backbone taking {'token_ids', 'padding_mask'}, e.g. "
                f"`keras_unitscale.models.LSTMBackbone`; received {backbone!r:.80}."
            )
        label_names = _label_names(label_names)
        num_classes = positive_int(num_classes, "num_classes")
        if label_names is not None and len(label_names) != num_classes:
            raise ValueError(
                f"`label_names` must name each of the {num_classes} classes (num_classes="
                f"{num_classes}); received {len(label_names)} names: {label_names!r:.80}."
            )
        dropout = validate_rate(dropout, "dropout")
        output_mult = positive_number(output_mult, "output_mult")
        check_preprocessor(backbone, preprocessor)
        dtype = backbone.dtype_policy

        # === Layers ===
        self.backbone = backbone
        self.preprocessor = preprocessor
        self.pooler = SequencePooling(pooling, dtype=dtype, name="pooling")
        self.output_dropout = layers.Dropout(dropout, dtype=dtype, name="output_dropout")
        self.output_dense = layers.Dense(num_classes, readout=True, output_mult=output_mult,
                                         dtype=dtype, name="logits")

        # === Functional model ===
        inputs = backbone.input
        pooled = self.pooler(backbone(inputs), inputs["padding_mask"])
        outputs = self.output_dense(self.output_dropout(pooled))
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)

        # === Config ===
        self.num_classes = num_classes
        self.pooling = pooling
        self.dropout = dropout
        self.output_mult = output_mult
        self.label_names = label_names
        self.compile()

    def compile(self, optimizer=None, loss=None, metrics="auto", **kwargs):
        """`UnitScaledModel.compile` (u-muP's AdamW, base rate 0.5, our cross-entropy on logits,
        no loss scaling) with accuracy as the default metric.

        Args:
            optimizer, loss: as `UnitScaledModel.compile`.
            metrics: `"auto"` (accuracy) or Keras metrics.
            **kwargs: `learning_rate` and the rest of `keras.Model.compile`'s arguments.
        """
        if isinstance(metrics, str) and metrics == "auto":
            metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)

    def predict_labels(self, x, **kwargs):
        """The predicted class of each input: its name when `label_names` are set, else its
        id. `x` and `kwargs` as `predict`.

        Example:
        >>> import numpy as np
        >>> import keras_unitscale as ku
        >>> backbone = ku.models.LSTMBackbone(vocabulary_size=20, hidden_dim=4)
        >>> classifier = ku.models.TextClassifier(backbone, 2, label_names=["neg", "pos"])
        >>> x = {"token_ids": np.array([[3, 4, 0]]), "padding_mask": np.array([[1, 1, 0]])}
        >>> classifier.num_classes, classifier.predict_labels(x, verbose=0)[0] in ("neg", "pos")
        (2, True)
        """
        ids = np.argmax(np.asarray(self.predict(x, **kwargs)), axis=-1)
        if self.label_names is None:
            return [int(i) for i in ids]
        return [self.label_names[int(i)] for i in ids]

    def check_targets(self, y):
        """Labels must be integer class ids in `[0, num_classes)`."""
        dtype, values = _labels(y)
        if dtype.kind not in "iub":
            raise ValueError(
                f"Labels `y` must be integer class ids in [0, {self.num_classes}); received "
                f"dtype {dtype}"
                + (" (strings: map them to ids first)." if dtype.kind in "USO" else ".")
            )
        if values is not None:
            if values.size and (values.min() < 0 or values.max() >= self.num_classes):
                raise ValueError(
                    f"Labels `y` must be in [0, {self.num_classes}) (num_classes="
                    f"{self.num_classes}); received labels in [{values.min()}, {values.max()}]."
                )

    def get_config(self):
        config = super().get_config()
        config.update(num_classes=self.num_classes, pooling=self.pooling, dropout=self.dropout,
                      output_mult=self.output_mult, label_names=self.label_names)
        return config


def _label_names(names):
    if names is None:
        return None
    if isinstance(names, str) or not isinstance(names, (list, tuple)) or not names or not all(
        isinstance(n, str) and n for n in names
    ) or len(set(names)) != len(names):
        raise ValueError(
            "`label_names` must be a list of distinct, non-empty strings (one per class); "
            f"received {names!r:.80}."
        )
    return list(names)
