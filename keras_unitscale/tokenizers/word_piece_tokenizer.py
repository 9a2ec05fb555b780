"""KerasHub's WordPiece tokenizer with our special tokens, and a trainer for it."""

import re

import keras
import keras_hub
from keras_hub.src.tokenizers import word_piece_tokenizer as hub_word_piece
from keras_hub.src.utils.tensor_utils import convert_to_ragged_batch, preprocessing_function

from keras_unitscale.tokenizers import vocabulary as vocab_lib
from keras_unitscale.tokenizers._core_word_piece import CoreWordPiece
from keras_unitscale.tokenizers._inputs import as_string, tf

# KerasHub's split patterns (RE2), which core TensorFlow's regex ops take as they are.
_PATTERNS = (hub_word_piece.WHITESPACE_REGEX, hub_word_piece.PUNCTUATION_REGEX,
             hub_word_piece.CJK_REGEX)

_SPECIAL_ATTRS = ("pad_token", "unknown_token", "start_token", "end_token", "cls_token")


@keras.saving.register_keras_serializable(package="keras_unitscale")
class WordPieceTokenizer(keras_hub.tokenizers.WordPieceTokenizer):
    """`keras_hub.tokenizers.WordPieceTokenizer` exposing the special-token ids our
    preprocessors use: `pad_token_id`, `unknown_token_id`, `start_token_id`, `end_token_id`
    and `cls_token_id` (tokens `[PAD]`, `[UNK]`, `[START]`, `[END]`, `[CLS]`).

    Arguments, splitting rules, assets and the eager (pure Python) path are KerasHub's. The
    TensorFlow path (inside `tf.data` or a `tf.function`, and so in an export) is ours, in
    core TensorFlow ops only, with KerasHub's (TF Text's) ids and texts: an exported model
    loads with TensorFlow alone, no TF Text. Train a vocabulary with `train_word_piece`.

    Example:

    >>> tokenizer = train_word_piece(["the quick brown fox", "the lazy dog"], 60)
    >>> tokenizer.detokenize(tokenizer("the lazy fox"))
    'the lazy fox'
    >>> tokenizer.pad_token_id, tokenizer.unknown_token_id
    (0, 1)
    """

    def __init__(self, vocabulary=None, **kwargs):
        for token, attr in zip(vocab_lib.SPECIAL_TOKENS, _SPECIAL_ATTRS):
            self._add_special_token(token, attr)
        kwargs.setdefault("oov_token", vocab_lib.UNKNOWN_TOKEN)
        self._core = None
        super().__init__(vocabulary=vocabulary, **kwargs)

    # The TensorFlow path, in core ops (see `_core_word_piece`) --------------------------------
    def set_vocabulary(self, vocabulary):
        self._core = None
        super().set_vocabulary(vocabulary)
        if self.vocabulary is not None and tf is not None and self._core is None:
            self._set_vocabulary_tf()

    def _set_vocabulary_tf(self):
        # Built eagerly (hash tables), outside any `tf.data` trace, so pipelines can capture it.
        # KerasHub's TF Text tokenizer (`_fast_word_piece`) is never built.
        self._core = CoreWordPiece(self.vocabulary, self.suffix_indicator, self.oov_token,
                                   self.lowercase, self.strip_accents)

    def _maybe_initialized_tf(self):
        if self._core is None:
            self._set_vocabulary_tf()

    @preprocessing_function
    def _tokenize_tf(self, inputs):
        self._maybe_initialized_tf()
        if not isinstance(inputs, tf.RaggedTensor):
            inputs = tf.convert_to_tensor(inputs)
        unbatched = inputs.shape.rank == 0
        if unbatched:
            inputs = tf.expand_dims(inputs, 0)
        pattern = hub_word_piece.get_special_tokens_pattern(self._special_tokens_for_splitting())
        words = self._core.pretokenize(inputs, self.split, self.split_on_cjk, pattern, _PATTERNS)
        tokens = self._core.tokenize_words(words).merge_dims(-2, -1)
        if self.compute_dtype == "string":
            tokens = tf.ragged.map_flat_values(tf.gather, self._core.vocabulary, tokens)
        else:
            tokens = tf.cast(tokens, self.compute_dtype)
        if self.sequence_length:
            output_shape = tokens.shape.as_list()
            output_shape[-1] = self.sequence_length
            tokens = tokens.to_tensor(shape=output_shape)
        if unbatched:
            tokens = tf.squeeze(tokens, 0)
            tf.ensure_shape(tokens, shape=[self.sequence_length])
        return tokens

    @preprocessing_function
    def _detokenize_tf(self, inputs):
        self._maybe_initialized_tf()
        inputs, unbatched, _ = convert_to_ragged_batch(inputs)
        outputs = self._core.detokenize(inputs)
        return tf.squeeze(outputs, 0) if unbatched else outputs


def train_word_piece(corpus, vocabulary_size, lowercase=True, **kwargs):
    """Learns a WordPiece vocabulary from a corpus and returns a `WordPieceTokenizer`.

    A thin wrapper over `keras_hub.tokenizers.compute_word_piece_vocabulary` that reserves our
    five special tokens (ids 0-4) and accepts an in-memory list of strings.

    Args:
        corpus: an iterable of strings, or a `tf.data.Dataset` of strings.
        vocabulary_size: int, the largest vocabulary size.
        lowercase: bool, lowercase text before learning and tokenizing.
        **kwargs: passed to `compute_word_piece_vocabulary` (e.g. `split_on_cjk`).

    Example:

    >>> tokenizer = train_word_piece(["Hello world", "hello there"], 30)
    >>> tokenizer.get_vocabulary()[:5]
    ['[PAD]', '[UNK]', '[START]', '[END]', '[CLS]']
    """
    if isinstance(vocabulary_size, bool) or not isinstance(vocabulary_size, int):
        raise TypeError(f"`vocabulary_size` must be an int. Received: {vocabulary_size!r}")
    if vocabulary_size <= len(vocab_lib.SPECIAL_TOKENS):
        raise ValueError(
            f"`vocabulary_size` must exceed {len(vocab_lib.SPECIAL_TOKENS)} (the special "
            f"tokens). Received: {vocabulary_size}"
        )
    if not isinstance(corpus, tf.data.Dataset):
        if isinstance(corpus, (str, bytes)):
            raise TypeError("`corpus` must be an iterable of strings, not a single string.")
        texts = [as_string(text, "corpus", i) for i, text in enumerate(corpus)]
        corpus = tf.data.Dataset.from_tensor_slices(tf.constant(texts, dtype=tf.string))
    vocabulary = keras_hub.tokenizers.compute_word_piece_vocabulary(
        corpus.batch(1024),
        vocabulary_size,
        lowercase=lowercase,
        reserved_tokens=list(vocab_lib.SPECIAL_TOKENS),
        **kwargs,
    )
    return WordPieceTokenizer(vocabulary=vocabulary, lowercase=lowercase)


def tidy_detokenized(text):
    """Closes the spaces that WordPiece detokenization leaves around punctuation.

    `detokenize` joins pieces with spaces, so "it's fine." comes back as "it ' s fine .".
    This puts the punctuation back against its words, for display and for scoring against
    untokenized references (BLEU, chrF).

    >>> tidy_detokenized("he said : it ' s fine . ( really ) !")
    "he said: it's fine. (really)!"
    """
    text = re.sub(r"\s+([.,!?;:%)])", r"\1", text)
    text = re.sub(r"\s*'\s*", "'", text)
    return re.sub(r"([(])\s+", r"\1", text).strip()
