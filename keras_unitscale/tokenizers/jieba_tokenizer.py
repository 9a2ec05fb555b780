"""Chinese word tokenizer: jieba segmentation, then a vocabulary lookup."""

import os
import re

import keras
import numpy as np

from keras_unitscale.tokenizers import jieba_segmenter
from keras_unitscale.tokenizers._inputs import tf
from keras_unitscale.tokenizers.vocabulary import SPACE_TOKEN
from keras_unitscale.tokenizers.vocabulary_tokenizer import VOCABULARY_FILE, VocabularyTokenizer

USER_DICTIONARY_FILE = "user_dictionary.txt"
# The separators of pre-segmented text. Spelled out (not `\s`) so that Python's `re` and
# TensorFlow's RE2 split on exactly the same characters.
_SEPARATORS = "[ \t\n\r\f\v]+"
_WHITESPACE_RUN = re.compile(r"\s+")


@keras.saving.register_keras_serializable(package="keras_unitscale")
class JiebaTokenizer(VocabularyTokenizer):
    """Segments Chinese (and mixed) text into words with jieba and maps words to ids.

    Each run of whitespace becomes the token `▁`, so `detokenize(tokenize(text))` gives back
    `text` with whitespace runs collapsed to one space and the ends stripped. Words missing
    from the vocabulary map to `unknown_token_id`.

    Segmentation state is per tokenizer: a `user_dictionary` changes this tokenizer only,
    never jieba's global dictionary nor another tokenizer. Tokenizers with equal user
    dictionaries share one read-only `jieba.Tokenizer` per process.

    Inside `tf.data` or a `tf.function` (and so in an exported SavedModel), segmentation runs
    in core TensorFlow ops (`keras_unitscale.tokenizers.jieba_graph`): jieba's dictionary
    DAG, maximum-probability route and HMM rebuilt as lookup tables and loops, giving the
    same words as the Python path, batched and with no Python at run time. With
    `presegmented=True` the tokenizer instead splits its input on ASCII whitespace (produce
    such input with `" ".join(tokenizer.segment(text))`).

    Args:
        vocabulary: list of strings or path to a one-token-a-line file; must hold `[PAD]`,
            `[UNK]`, `[START]`, `[END]` and `[CLS]`. Usually built with `from_corpus`.
        user_dictionary: `None`, a path to a jieba user dictionary (`word [freq] [tag]` per
            line), or a list of such strings. Saved as an asset with the vocabulary.
        hmm: bool. Let jieba's HMM join unseen character runs into new words.
        presegmented: bool. Treat inputs as words already separated by spaces.
        dtype: "int32" or "int64", the id dtype.

    Example:

    >>> tokenizer = JiebaTokenizer.from_corpus(["我喜欢这本书", "这本书很好", "我喜欢"])
    >>> ids = tokenizer("我喜欢这本书")
    >>> tokenizer.detokenize(ids)
    '我喜欢这本书'
    >>> tokenizer.segment("这本书很好 Keras 3")
    ['这', '本书', '很', '好', '▁', 'Keras', '▁', '3']
    >>> int(tokenizer("没见过的词")[0]) == tokenizer.unknown_token_id
    True
    """

    def __init__(
        self, vocabulary=None, user_dictionary=None, hmm=True, presegmented=False, **kwargs
    ):
        for name, value in (("hmm", hmm), ("presegmented", presegmented)):
            if not isinstance(value, (bool, np.bool_)):
                raise TypeError(f"`{name}` must be a bool. Received: {value!r}")
        super().__init__(vocabulary=vocabulary, **kwargs)
        self.hmm = bool(hmm)
        self.presegmented = bool(presegmented)
        self.set_user_dictionary(user_dictionary)
        self.file_assets = [VOCABULARY_FILE, USER_DICTIONARY_FILE]

    def set_user_dictionary(self, user_dictionary):
        """Sets the user words (see `user_dictionary` in the class docstring)."""
        self._user_entries = jieba_segmenter.parse_user_dictionary(user_dictionary)
        self._segmenter = None  # Built on first use; pre-segmented input never needs jieba.
        self._graph_segmenter = None

    @property
    def user_words(self):
        """The user dictionary's words, in order."""
        return [word for word, _, _ in self._user_entries]

    def _get_segmenter(self):
        if self._segmenter is None:
            self._segmenter = jieba_segmenter.get_segmenter(self._user_entries)
        return self._segmenter

    def graph_segmenter(self):
        """The in-graph segmenter of this tokenizer's dictionary (built on first use, shared
        by tokenizers with equal user words): a `JiebaGraphSegmenter` whose lookup tables an
        export saves with the graph."""
        if self._graph_segmenter is None:
            from keras_unitscale.tokenizers import jieba_graph

            self._graph_segmenter = jieba_graph.get_graph_segmenter(self._user_entries)
        return self._graph_segmenter

    # Splitting and joining ------------------------------------------------------------------
    def _split_python(self, text):
        if self.presegmented:
            return [w for w in re.split(_SEPARATORS, text) if w]
        text = _WHITESPACE_RUN.sub(" ", text).strip()
        words = self._get_segmenter().cut(text, HMM=self.hmm)
        return [SPACE_TOKEN if w == " " else w for w in words]

    def _split_tf(self, texts):
        if self.presegmented:
            normalized = tf.strings.regex_replace(texts, _SEPARATORS, " ")
            words = tf.strings.split(normalized, sep=" ")
            return tf.ragged.boolean_mask(words, tf.not_equal(words, ""))
        return self.graph_segmenter()(texts, hmm=self.hmm)

    # Assets and config ----------------------------------------------------------------------
    def save_assets(self, dir_path):
        super().save_assets(dir_path)
        path = os.path.join(dir_path, USER_DICTIONARY_FILE)
        with open(path, "w", encoding="utf-8", newline="\n") as f:
            f.write(jieba_segmenter.format_user_dictionary(self._user_entries))

    def load_assets(self, dir_path):
        super().load_assets(dir_path)
        path = os.path.join(dir_path, USER_DICTIONARY_FILE)
        self.set_user_dictionary(path if os.path.exists(path) else None)

    def get_config(self):
        config = super().get_config()
        config.update({"user_dictionary": None, "hmm": self.hmm, "presegmented": self.presegmented})
        return config
