"""Causal language-model preprocessing: padded or packed windows, labels shifted by one."""

import keras
import keras_hub

from keras_unitscale.preprocessors import _common
from keras_unitscale.preprocessors._common import (
    check_length,
    check_special_ids,
    check_text,
    check_tokenizer,
)


@keras.saving.register_keras_serializable(package="keras_unitscale")
class CausalLMPreprocessor(keras_hub.models.Preprocessor):
    """Turns raw strings into next-token-prediction inputs, labels and weights.

    Padding (calling the layer): each text becomes `[START] ... [END]`, truncated or padded to
    `sequence_length + 1`; `x` takes all but the last position, `y` all but the first.
    Packing (`pack_dataset`): the texts of a `tf.data.Dataset` are concatenated, each as
    `[START] ... [END]`, and cut into windows of `sequence_length + 1` with no padding at all.

    Outputs `(x, y, sample_weight)`: `x = {"token_ids", "padding_mask"}`, `y` the ids shifted
    left by one, `sample_weight` float32, 1.0 on real label tokens and 0.0 on padding.

    `generate_preprocess` packs a prompt (`[START]`, no `[END]`) for `generate()`;
    `generate_postprocess` and `detokenize` turn generated ids back into text, stopping at
    the first `[END]` and dropping padding and special tokens.

    Args:
        tokenizer: e.g. `keras_unitscale.tokenizers.JiebaTokenizer`.
        sequence_length: int, the model's input length.
        add_start_token: bool, put `[START]` before each text.
        add_end_token: bool, put `[END]` after each text.

    Example:

    >>> from keras_unitscale.tokenizers import JiebaTokenizer
    >>> tokenizer = JiebaTokenizer.from_corpus(["我喜欢这本书"])
    >>> preprocessor = CausalLMPreprocessor(tokenizer, sequence_length=6)
    >>> x, y, w = preprocessor(["我喜欢这本书"])
    >>> keras.ops.convert_to_numpy(x["token_ids"]).tolist()
    [[2, 6, 5, 8, 7, 3]]
    >>> keras.ops.convert_to_numpy(y).tolist()
    [[6, 5, 8, 7, 3, 0]]
    >>> keras.ops.convert_to_numpy(w).tolist()
    [[1.0, 1.0, 1.0, 1.0, 1.0, 0.0]]
    >>> prompt = preprocessor.generate_preprocess(["我喜欢"])
    >>> preprocessor.generate_postprocess(prompt)
    ['我喜欢']
    """

    def __init__(
        self, tokenizer, sequence_length=128, add_start_token=True, add_end_token=True, **kwargs
    ):
        super().__init__(**kwargs)
        self.tokenizer = check_tokenizer(tokenizer)
        self.sequence_length = check_length(sequence_length, "sequence_length", 1)
        self.add_start_token = bool(add_start_token)
        self.add_end_token = bool(add_end_token)
        self.packer = None

    def build(self, input_shape):
        check_special_ids(self.tokenizer)
        self.packer = keras_hub.layers.StartEndPacker(
            sequence_length=None,  # Given per call.
            start_value=self.tokenizer.start_token_id,
            end_value=self.tokenizer.end_token_id,
            pad_value=self.tokenizer.pad_token_id,
            return_padding_mask=True,
        )
        self.built = True

    def call(self, x, y=None, sample_weight=None, sequence_length=None):
        if y is not None or sample_weight is not None:
            raise ValueError(
                "CausalLMPreprocessor derives `y` and `sample_weight` from `x`; pass only text."
            )
        if not self._use_tf_workflow():
            check_text(x, "x")
        length = check_length(sequence_length or self.sequence_length, "sequence_length")
        token_ids, padding_mask = self.packer(
            self.tokenizer(x),
            sequence_length=length + 1,
            add_start_value=self.add_start_token,
            add_end_value=self.add_end_token,
        )
        x = {"token_ids": token_ids[..., :-1], "padding_mask": padding_mask[..., :-1]}
        weights = _common.to_weights(padding_mask[..., 1:], self._use_tf_workflow())
        return keras.utils.pack_x_y_sample_weight(x, token_ids[..., 1:], weights)

    def pack_dataset(self, dataset):
        """Packs a `tf.data.Dataset` of strings into full windows, returning `(x, y, weights)`.

        Texts (scalar or batched elements) are tokenized, wrapped in `[START]`/`[END]` as
        configured, concatenated in order and cut into windows of `sequence_length + 1` ids;
        the last incomplete window is dropped. Every position is real text, so `padding_mask`
        and the weights are all ones. The result is unbatched: call `.batch()` on it.
        """
        tf = _common.tf
        if not isinstance(dataset, tf.data.Dataset):
            raise TypeError(f"`dataset` must be a tf.data.Dataset. Received: {type(dataset)}")
        spec = dataset.element_spec
        if (
            not isinstance(spec, tf.TensorSpec)
            or spec.dtype != tf.string
            or (spec.shape.rank not in (0, 1))
        ):
            raise ValueError(
                "`dataset` must yield strings (scalars or 1-D batches); its element_spec is "
                f"{spec}."
            )
        tokenizer = self.tokenizer
        check_special_ids(tokenizer)
        start = [tokenizer.start_token_id] if self.add_start_token else []
        end = [tokenizer.end_token_id] if self.add_end_token else []

        def wrap(text):
            ids = tokenizer(tf.reshape(text, [-1]))
            ids = tf.cast(ids, "int32")
            rows = tf.shape(ids.row_splits)[0] - 1
            parts = [tf.RaggedTensor.from_tensor(tf.fill([rows, 1], v)) for v in start]
            parts.append(ids)
            parts += [tf.RaggedTensor.from_tensor(tf.fill([rows, 1], v)) for v in end]
            return tf.concat(parts, axis=1).flat_values

        window = self.sequence_length + 1

        def split(ids):
            x = {"token_ids": ids[:-1], "padding_mask": tf.ones([window - 1], tf.bool)}
            return x, ids[1:], tf.ones([window - 1], tf.float32)

        return dataset.map(wrap).unbatch().batch(window, drop_remainder=True).map(split)

    def generate_preprocess(self, x, sequence_length=None):
        """Packs prompts for `generate()`: `[START]` + ids, no `[END]`, padded on the right.

        Returns `{"token_ids", "padding_mask"}` of length `sequence_length` (default: the
        configured one). A prompt too long to leave a position to generate keeps its end: the
        last `sequence_length - 2` tokens after `[START]` (`- 1` without a start token).
        """
        if not self.built:
            self.build(None)
        if not self._use_tf_workflow():
            check_text(x, "x")
        length = sequence_length or self.sequence_length
        room = max(length - 1 - int(bool(self.add_start_token)), 1)
        token_ids, padding_mask = self.packer(
            _common.keep_last(self.tokenizer(x), room),
            sequence_length=length,
            add_start_value=self.add_start_token,
            add_end_value=False,
        )
        return {"token_ids": token_ids, "padding_mask": padding_mask}

    def generate_postprocess(self, x):
        """`{"token_ids", "padding_mask"}` from generation -> text, stopping at `[END]`."""
        return _common.ids_to_text(
            self.tokenizer, x["token_ids"], x.get("padding_mask"), use_tf=self._use_tf_workflow()
        )

    def detokenize(self, token_ids):
        """Generated ids -> text, dropping special tokens and everything after `[END]`."""
        return _common.ids_to_text(self.tokenizer, token_ids, use_tf=self._use_tf_workflow())

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "sequence_length": self.sequence_length,
                "add_start_token": self.add_start_token,
                "add_end_token": self.add_end_token,
            }
        )
        return config
