"""KerasHub's WordPiece tokenizer with our special tokens, and a trainer for it."""

import re

import keras
import keras_hub

from keras_unitscale.tokenizers import vocabulary as vocab_lib
from keras_unitscale.tokenizers._inputs import as_string, tf

_SPECIAL_ATTRS = ("pad_token", "unknown_token", "start_token", "end_token", "cls_token")


@keras.saving.register_keras_serializable(package="keras_unitscale")
class WordPieceTokenizer(keras_hub.tokenizers.WordPieceTokenizer):
    """`keras_hub.tokenizers.WordPieceTokenizer` exposing the special-token ids our
    preprocessors use: `pad_token_id`, `unknown_token_id`, `start_token_id`, `end_token_id`
    and `cls_token_id` (tokens `[PAD]`, `[UNK]`, `[START]`, `[END]`, `[CLS]`).

    Everything else (arguments, splitting on punctuation and CJK characters, assets, the
    eager and `tf.data` paths) is KerasHub's. Train a vocabulary with `train_word_piece`.

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
        super().__init__(vocabulary=vocabulary, **kwargs)


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
