"""Character tokenizer with a vocabulary built from a corpus, entirely in TensorFlow ops."""

import re

import keras

from keras_unitscale.tokenizers._inputs import tf
from keras_unitscale.tokenizers.vocabulary import SPACE_TOKEN
from keras_unitscale.tokenizers.vocabulary_tokenizer import VocabularyTokenizer

# Spelled out (not `\s`) so that Python's `re` and TensorFlow's RE2 agree exactly.
_ASCII_WHITESPACE = " \t\n\r\f\v"
_WHITESPACE = f"[{_ASCII_WHITESPACE}]+"


@keras.saving.register_keras_serializable(package="keras_unitscale")
class CharacterTokenizer(VocabularyTokenizer):
    """Maps each Unicode character to an id from a vocabulary built on a corpus.

    Suited to Chinese and mixed Chinese-English text when a word segmenter is not wanted.
    Unlike `keras_hub.tokenizers.UnicodeCodepointTokenizer`, ids index a vocabulary of the
    characters actually seen (a few thousand for Chinese rather than 40,000+ code points), so
    rare characters share `[UNK]`. Leading and trailing ASCII whitespace is dropped and each
    inner run becomes one `▁` token; `detokenize` joins characters back, `▁` as a space.
    Both paths (eager Python, in-graph TensorFlow) give the same ids, and the in-graph path has
    no Python in it, so it exports to a SavedModel.

    Args:
        vocabulary: list of strings or path to a one-token-a-line file; must hold `[PAD]`,
            `[UNK]`, `[START]`, `[END]` and `[CLS]`. Usually built with `from_corpus`.
        dtype: "int32" or "int64", the id dtype.

    Example:

    >>> tokenizer = CharacterTokenizer.from_corpus(["我用 Keras", "你好"])
    >>> tokenizer.segment("你用 Keras")
    ['你', '用', '▁', 'K', 'e', 'r', 'a', 's']
    >>> tokenizer.detokenize(tokenizer("你用  Keras"))
    '你用 Keras'
    """

    def _split_python(self, text):
        return list(re.sub(_WHITESPACE, SPACE_TOKEN, text.strip(_ASCII_WHITESPACE)))

    def _split_tf(self, texts):
        texts = tf.strings.regex_replace(tf.strings.strip(texts), _WHITESPACE, SPACE_TOKEN)
        return tf.strings.unicode_split(texts, "UTF-8")
