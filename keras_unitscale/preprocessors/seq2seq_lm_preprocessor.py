"""Sequence-to-sequence preprocessing: encoder ids, decoder ids, shifted labels, weights."""

import keras
import keras_hub

from keras_unitscale.preprocessors import _common
from keras_unitscale.preprocessors._common import (
    check_length,
    check_special_ids,
    check_text,
    check_tokenizer,
)

_KEYS = ("encoder_text", "decoder_text")


@keras.saving.register_keras_serializable(package="keras_unitscale")
class Seq2SeqLMPreprocessor(keras_hub.models.Preprocessor):
    """Turns `{"encoder_text", "decoder_text"}` pairs into teacher-forcing inputs.

    The encoder text becomes `[START] ... [END] [PAD]...` of `encoder_sequence_length`. The
    decoder text becomes `[START] ... [END]` padded to `decoder_sequence_length + 1` and is
    split into inputs (all but the last position) and labels (all but the first), so the model
    predicts each next token. Source and target may use different tokenizers, e.g. jieba for
    Chinese and WordPiece for English (`decoder_tokenizer`).

    Outputs `(x, y, sample_weight)`: `x = {"encoder_token_ids", "encoder_padding_mask",
    "decoder_token_ids", "decoder_padding_mask"}`, `y` the decoder ids shifted left by one,
    `sample_weight` float32, 1.0 where `y` is a real token and 0.0 on padding.

    `generate_preprocess` and `generate_postprocess` prepare a prompt for decoding (no `[END]`
    on the decoder) and turn generated decoder ids back into text; `detokenize` does the latter
    for a bare array of generated ids.

    Args:
        tokenizer: the encoder's tokenizer (and the decoder's, if `decoder_tokenizer` is None).
        decoder_tokenizer: optional tokenizer for the decoder side.
        encoder_sequence_length: int, the encoder's padded length.
        decoder_sequence_length: int, the decoder's padded length.

    Example:

    >>> from keras_unitscale.tokenizers import JiebaTokenizer, train_word_piece
    >>> zh = JiebaTokenizer.from_corpus(["我喜欢猫", "你好"])
    >>> en = train_word_piece(["i like cats", "you like dogs"] * 20, 60)
    >>> preprocessor = Seq2SeqLMPreprocessor(zh, en, 8, 8)
    >>> x, y, w = preprocessor({"encoder_text": ["我喜欢猫"], "decoder_text": ["i like cats"]})
    >>> sorted(x)
    ['decoder_padding_mask', 'decoder_token_ids', 'encoder_padding_mask', 'encoder_token_ids']
    >>> keras.ops.convert_to_numpy(w).tolist()
    [[1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]]
    >>> preprocessor.detokenize(y)
    ['i like cats']
    """

    def __init__(
        self,
        tokenizer,
        decoder_tokenizer=None,
        encoder_sequence_length=64,
        decoder_sequence_length=64,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.tokenizer = check_tokenizer(tokenizer)
        if decoder_tokenizer is not None:
            self._decoder_tokenizer = check_tokenizer(decoder_tokenizer, "decoder_tokenizer")
        else:
            self._decoder_tokenizer = None
        self.encoder_sequence_length = check_length(
            encoder_sequence_length, "encoder_sequence_length", 2
        )
        self.decoder_sequence_length = check_length(
            decoder_sequence_length, "decoder_sequence_length", 2
        )
        self.encoder_packer = None
        self.decoder_packer = None

    @property
    def decoder_tokenizer(self):
        """The decoder side's tokenizer (the encoder's when none was given)."""
        return self._decoder_tokenizer or self.tokenizer

    def build(self, input_shape):
        check_special_ids(self.tokenizer)
        check_special_ids(self.decoder_tokenizer, "decoder_tokenizer")

        def packer(tokenizer):
            return keras_hub.layers.StartEndPacker(
                sequence_length=None,  # Given per call.
                start_value=tokenizer.start_token_id,
                end_value=tokenizer.end_token_id,
                pad_value=tokenizer.pad_token_id,
                return_padding_mask=True,
            )

        self.encoder_packer = packer(self.tokenizer)
        self.decoder_packer = packer(self.decoder_tokenizer)
        self.built = True

    def _split(self, x, require_decoder):
        if not isinstance(x, dict) or "encoder_text" not in x:
            raise ValueError(
                "`x` must be a dict with 'encoder_text' and 'decoder_text' (strings or batches "
                f"of strings). Received: {type(x).__name__}"
            )
        unknown = set(x) - set(_KEYS)
        if unknown or (require_decoder and "decoder_text" not in x):
            raise ValueError(f"`x` must have exactly the keys {list(_KEYS)}; got {sorted(x)}.")
        if not self._use_tf_workflow():
            for key in x:
                check_text(x[key], f"x['{key}']")
        return x["encoder_text"], x.get("decoder_text")

    def _encode(self, text, length):
        return self.encoder_packer(self.tokenizer(text), sequence_length=length)

    def call(self, x, y=None, sample_weight=None):
        if y is not None or sample_weight is not None:
            raise ValueError(
                "Seq2SeqLMPreprocessor makes `y` and `sample_weight` from `x['decoder_text']`; "
                "pass the target text there, not as `y`."
            )
        encoder_text, decoder_text = self._split(x, require_decoder=True)
        encoder_ids, encoder_mask = self._encode(encoder_text, self.encoder_sequence_length)
        decoder_ids, decoder_mask = self.decoder_packer(
            self.decoder_tokenizer(decoder_text), sequence_length=self.decoder_sequence_length + 1
        )
        x = {
            "encoder_token_ids": encoder_ids,
            "encoder_padding_mask": encoder_mask,
            "decoder_token_ids": decoder_ids[..., :-1],
            "decoder_padding_mask": decoder_mask[..., :-1],
        }
        weights = _common.to_weights(decoder_mask[..., 1:], self._use_tf_workflow())
        return keras.utils.pack_x_y_sample_weight(x, decoder_ids[..., 1:], weights)

    def generate_preprocess(self, x, encoder_sequence_length=None, decoder_sequence_length=None):
        """Packs a prompt for generation: encoder ids, decoder ids that start with `[START]`.

        `x` is source text (the decoder prompt is then empty) or a dict with `encoder_text`
        and optionally `decoder_text` (a prefix to continue). The decoder gets no `[END]`.
        Returns the four-key dict of `call`'s `x`, padded to the given or configured lengths.
        A source longer than the encoder's length is cut as in training (its start kept, then
        `[END]`); a decoder prompt too long to leave a position to generate keeps its end:
        the last `decoder_sequence_length - 2` tokens after `[START]`.
        """
        if not self.built:
            self.build(None)
        if not isinstance(x, dict):
            x = {"encoder_text": x}
        encoder_text, decoder_text = self._split(x, require_decoder=False)
        if decoder_text is None:
            decoder_text = _empty_like(encoder_text, self._use_tf_workflow())
        encoder_ids, encoder_mask = self._encode(
            encoder_text, encoder_sequence_length or self.encoder_sequence_length
        )
        length = decoder_sequence_length or self.decoder_sequence_length
        decoder_ids, decoder_mask = self.decoder_packer(
            _common.keep_last(self.decoder_tokenizer(decoder_text), max(length - 2, 1)),
            sequence_length=length,
            add_end_value=False,
        )
        return {
            "encoder_token_ids": encoder_ids,
            "encoder_padding_mask": encoder_mask,
            "decoder_token_ids": decoder_ids,
            "decoder_padding_mask": decoder_mask,
        }

    def generate_postprocess(self, x):
        """Decoder ids (and mask) from generation -> text, stopping at the first `[END]`."""
        return _common.ids_to_text(
            self.decoder_tokenizer,
            x["decoder_token_ids"],
            x.get("decoder_padding_mask"),
            use_tf=self._use_tf_workflow(),
        )

    def detokenize(self, token_ids):
        """Generated decoder ids -> text, dropping special tokens and all after `[END]`."""
        return _common.ids_to_text(
            self.decoder_tokenizer, token_ids, use_tf=self._use_tf_workflow()
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "decoder_tokenizer": (
                    keras.layers.serialize(self._decoder_tokenizer)
                    if self._decoder_tokenizer is not None
                    else None
                ),
                "encoder_sequence_length": self.encoder_sequence_length,
                "decoder_sequence_length": self.decoder_sequence_length,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("decoder_tokenizer"), dict):
            config["decoder_tokenizer"] = keras.layers.deserialize(config["decoder_tokenizer"])
        return super().from_config(config)


def _empty_like(text, use_tf):
    if use_tf:
        return _common.tf.fill(_common.tf.shape(text), "")
    if isinstance(text, (str, bytes)):
        return ""
    return [""] * len(text)
