"""Classification preprocessing: tokenize, truncate and pad to a fixed length, mask."""

import keras
import keras_hub

from keras_unitscale.preprocessors._common import (
    check_length,
    check_special_ids,
    check_text,
    check_tokenizer,
)


@keras.saving.register_keras_serializable(package="keras_unitscale")
class TextClassifierPreprocessor(keras_hub.models.Preprocessor):
    """Turns raw strings into fixed-length token ids and a padding mask for a classifier.

    Each text becomes `[CLS] w1 w2 ... wn [PAD] ...`, truncated or padded to
    `sequence_length`. Labels and sample weights pass through unchanged. Call it eagerly, map
    it over a `tf.data.Dataset` of strings or `(strings, labels)`, or give it to a task that
    calls it inside `fit()`; it works the same way on the TensorFlow and JAX backends.

    Outputs `keras.utils.pack_x_y_sample_weight(x, y, sample_weight)` where `x` is
    `{"token_ids": int (batch, sequence_length), "padding_mask": bool (batch,
    sequence_length)}`; the mask is `True` on real tokens (`[CLS]` included).

    Args:
        tokenizer: a tokenizer with `pad_token_id` and `cls_token_id` (or `start_token_id`),
            e.g. `keras_unitscale.tokenizers.JiebaTokenizer`.
        sequence_length: int, the padded length.
        add_cls_token: bool, whether to put `tokenizer.cls_token_id` first (falling back to
            `start_token_id` for tokenizers without a classification token).

    Example:

    >>> from keras_unitscale.tokenizers import JiebaTokenizer
    >>> tokenizer = JiebaTokenizer.from_corpus(["这本书很好", "质量太差了"])
    >>> preprocessor = TextClassifierPreprocessor(tokenizer, sequence_length=8)
    >>> x, y = preprocessor(["这本书很好", "质量很差"], [1, 0])
    >>> keras.ops.convert_to_numpy(x["token_ids"]).tolist()  # [CLS]=4, unknown 很差 -> [UNK]=1
    [[4, 11, 9, 8, 7, 0, 0, 0], [4, 10, 1, 0, 0, 0, 0, 0]]
    >>> keras.ops.convert_to_numpy(x["padding_mask"]).sum(axis=-1).tolist()
    [5, 3]
    """

    def __init__(self, tokenizer, sequence_length=128, add_cls_token=True, **kwargs):
        super().__init__(**kwargs)
        self.tokenizer = check_tokenizer(tokenizer)
        self.add_cls_token = bool(add_cls_token)
        self.sequence_length = check_length(
            sequence_length, "sequence_length", 2 if self.add_cls_token else 1
        )
        self.packer = None

    def build(self, input_shape):
        # Built here, not in `__init__`, so ids are read after `load_assets` restores them.
        check_special_ids(self.tokenizer)
        first_id = None
        if self.add_cls_token:
            first_id = getattr(self.tokenizer, "cls_token_id", None)
            if first_id is None:
                first_id = self.tokenizer.start_token_id
        self.packer = keras_hub.layers.StartEndPacker(
            sequence_length=self.sequence_length,
            start_value=first_id,
            pad_value=self.tokenizer.pad_token_id,
            return_padding_mask=True,
        )
        self.built = True

    def call(self, x, y=None, sample_weight=None):
        if not self._use_tf_workflow():
            check_text(x, "x")
        token_ids, padding_mask = self.packer(self.tokenizer(x))
        x = {"token_ids": token_ids, "padding_mask": padding_mask}
        return keras.utils.pack_x_y_sample_weight(x, y, sample_weight)

    @property
    def sequence_length(self):
        """The padded length; setting it also updates a built packer."""
        return self._sequence_length

    @sequence_length.setter
    def sequence_length(self, value):
        self._sequence_length = value
        if getattr(self, "packer", None) is not None:
            self.packer.sequence_length = value

    def get_config(self):
        config = super().get_config()
        config.update(
            {"sequence_length": self.sequence_length, "add_cls_token": self.add_cls_token}
        )
        return config
