"""Base class: split text into pieces, map pieces to ids through a vocabulary, and back.

Subclasses say how to split text (`_split_python`, `_split_tf`), writing each whitespace run
as the token `▁`. Everything else lives here once: the vocabulary and its special tokens, the
two execution paths (pure Python when eager, TensorFlow ops inside `tf.data` or a
`tf.function`), joining tokens back into text, assets and config.
"""

import os

import keras
import keras_hub
import numpy as np

from keras_unitscale.tokenizers import vocabulary as vocab_lib
from keras_unitscale.tokenizers._inputs import as_string, ids_to_lists, strings_to_list, tf

VOCABULARY_FILE = "vocabulary.txt"
_SPECIAL_ATTRS = ("pad_token", "unknown_token", "start_token", "end_token", "cls_token")


class VocabularyTokenizer(keras_hub.tokenizers.Tokenizer):
    """A tokenizer that splits text into pieces and looks each piece up in a vocabulary.

    Pieces missing from the vocabulary map to the unknown id (`[UNK]`), never to an error or
    to nothing. The vocabulary must hold the five special tokens `[PAD]`, `[UNK]`, `[START]`,
    `[END]` and `[CLS]`, exposed as `pad_token_id`, `unknown_token_id`, `start_token_id`,
    `end_token_id` and `cls_token_id`.

    Each whitespace run is one token, `▁` (U+2581, as in SentencePiece), so `detokenize`
    (which concatenates tokens and turns `▁` back into a space) gives back the text with every
    whitespace run as one space and no leading or trailing whitespace.

    Eager calls run pure Python and return a NumPy int array for one string, or a list of
    lists of ints for a batch. Inside `tf.data` or a `tf.function` the layer runs TensorFlow
    ops and returns a dense tensor for a scalar string, or a `tf.RaggedTensor` for a batch.
    The vocabulary is saved as an asset (`vocabulary.txt`), not in the config.

    Subclass it by implementing `_split_python(text) -> list[str]` and `_split_tf(texts) ->
    tf.RaggedTensor` (1-D string tensor in, one row of pieces per text out). See
    `JiebaTokenizer` and `CharacterTokenizer`.
    """

    def __init__(self, vocabulary=None, dtype="int32", **kwargs):
        if keras.backend.standardize_dtype(dtype) not in ("int32", "int64"):
            raise ValueError(f"`dtype` must be 'int32' or 'int64'. Received: {dtype!r}")
        super().__init__(dtype=dtype, **kwargs)
        for token, attr in zip(vocab_lib.SPECIAL_TOKENS, _SPECIAL_ATTRS):
            self._add_special_token(token, attr)
        self.file_assets = [VOCABULARY_FILE]
        self.set_vocabulary(vocabulary)

    # Vocabulary -----------------------------------------------------------------------------
    def set_vocabulary(self, vocabulary):
        """Sets the vocabulary from a list of strings, a file path (one token a line), or None."""
        if vocabulary is None:
            self._vocabulary, self._token_to_id, self._lookup_table = None, None, None
            return
        if isinstance(vocabulary, (str, os.PathLike)):
            vocabulary = vocab_lib.read_vocabulary_file(vocabulary)
        self._vocabulary = vocab_lib.check_vocabulary(vocabulary)
        self._token_to_id = {token: i for i, token in enumerate(self._vocabulary)}
        self._lookup_table = None
        if tf is not None:
            # Built eagerly, outside any `tf.data` trace, so that pipelines can capture it.
            self._build_tf_lookup()
        self._update_special_token_ids()

    def _build_tf_lookup(self):
        self._lookup_table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(self._vocabulary), tf.range(len(self._vocabulary), dtype=tf.int64)
            ),
            default_value=self._token_to_id[vocab_lib.UNKNOWN_TOKEN],
        )
        self._vocabulary_tensor = tf.constant(self._vocabulary)

    def _check_vocabulary(self):
        if self._vocabulary is None:
            raise ValueError(
                f"No vocabulary has been set for {type(self).__name__}. Pass `vocabulary=` to the "
                "constructor, call `set_vocabulary()`, or build one with `from_corpus()`."
            )

    def get_vocabulary(self):
        """Returns the vocabulary as a list of strings (index = token id)."""
        self._check_vocabulary()
        return list(self._vocabulary)

    def vocabulary_size(self):
        """Returns the number of tokens in the vocabulary, special tokens included."""
        self._check_vocabulary()
        return len(self._vocabulary)

    def id_to_token(self, id):
        """Returns the token string for an integer id."""
        self._check_vocabulary()
        if not 0 <= int(id) < len(self._vocabulary):
            raise ValueError(f"`id` must be in [0, {len(self._vocabulary) - 1}]. Received: {id}")
        return self._vocabulary[int(id)]

    def token_to_id(self, token):
        """Returns the id of a token; raises `ValueError` if it is not in the vocabulary."""
        self._check_vocabulary()
        if token not in self._token_to_id:
            raise ValueError(f"Token {token!r} is not in the vocabulary.")
        return self._token_to_id[token]

    @classmethod
    def from_corpus(cls, corpus, min_frequency=1, max_size=None, **kwargs):
        """Creates a tokenizer whose vocabulary is built from `corpus` (iterable of strings).

        `min_frequency` and `max_size` are as in `build_vocabulary`; other keyword arguments
        go to the constructor.
        """
        tokenizer = cls(**kwargs)
        if isinstance(corpus, (str, bytes)):
            raise TypeError("`corpus` must be an iterable of strings, not a single string.")
        count = [0]  # texts seen (the corpus may be a generator: not kept in memory)

        def pieces():
            for i, text in enumerate(corpus):
                count[0] = i + 1
                yield tokenizer._split_python(as_string(text, "corpus", i))

        vocabulary = vocab_lib.build_vocabulary(
            pieces(), min_frequency=min_frequency, max_size=max_size
        )
        if len(vocabulary) == len(vocab_lib.SPECIAL_TOKENS) and max_size != len(vocabulary):
            # Only special tokens: every text would become [UNK].
            found = "is empty" if not count[0] else (
                f"has no token seen at least min_frequency={min_frequency} times"
            )
            raise ValueError(
                f"`corpus` {found} ({count[0]} texts): the vocabulary would hold only the "
                "special tokens. Pass a non-empty list of texts."
            )
        tokenizer.set_vocabulary(vocabulary)
        return tokenizer

    # Splitting ------------------------------------------------------------------------------
    def _split_python(self, text):
        raise NotImplementedError

    def _split_tf(self, texts):
        raise NotImplementedError

    def _join_python(self, tokens):
        return "".join(tokens).replace(vocab_lib.SPACE_TOKEN, " ")

    def _join_tf(self, tokens):
        text = tf.strings.reduce_join(tokens, axis=-1)
        return tf.strings.regex_replace(text, vocab_lib.SPACE_TOKEN, " ")

    def _string_tensor(self, inputs, name):
        inputs = tf.convert_to_tensor(inputs)
        if inputs.dtype != tf.string:
            raise TypeError(
                f"`{name}` must be a string tensor; received dtype {inputs.dtype.name}."
            )
        if inputs.shape.rank not in (0, 1):
            raise ValueError(f"`{name}` must be a scalar or 1-D string tensor; got {inputs.shape}.")
        return inputs

    def segment(self, inputs):
        """Splits text into the pieces that the vocabulary is looked up with.

        Returns a list of strings for one string, a list of lists for a batch (eagerly), or a
        string tensor / `tf.RaggedTensor` inside a `tf.function`.
        """
        if self._use_tf_workflow():
            inputs = self._string_tensor(inputs, "inputs")
            pieces = self._split_tf(tf.reshape(inputs, [-1]))
            return pieces[0] if inputs.shape.rank == 0 else pieces
        texts, batched = strings_to_list(inputs)
        pieces = [self._split_python(text) for text in texts]
        return pieces if batched else pieces[0]

    # Tokenize / detokenize ------------------------------------------------------------------
    def tokenize(self, inputs):
        """Maps a string or a batch of strings to token ids (see the class docstring)."""
        self._check_vocabulary()
        if self._use_tf_workflow():
            return self._tokenize_tf(inputs)
        texts, batched = strings_to_list(inputs)
        unknown = self.unknown_token_id
        ids = [[self._token_to_id.get(p, unknown) for p in self._split_python(t)] for t in texts]
        return ids if batched else np.array(ids[0], dtype=self.compute_dtype)

    def _tokenize_tf(self, inputs):
        if self._lookup_table is None:
            self._build_tf_lookup()
        inputs = self._string_tensor(inputs, "inputs")
        pieces = self._split_tf(tf.reshape(inputs, [-1]))
        ids = tf.ragged.map_flat_values(self._lookup_table.lookup, pieces)
        ids = tf.cast(ids, self.compute_dtype)
        return ids[0] if inputs.shape.rank == 0 else ids

    def detokenize(self, inputs):
        """Maps token ids (one sequence or a batch) back to text.

        Tokens are concatenated and `▁` becomes a space. Every id is rendered, special tokens
        included (`[UNK]` for unknown words); the preprocessors' `generate_postprocess` strips
        padding and special tokens first.
        """
        self._check_vocabulary()
        if self._use_tf_workflow():
            return self._detokenize_tf(inputs)
        rows, batched = ids_to_lists(inputs)
        size = len(self._vocabulary)
        for row in rows:
            for i in row:
                if not 0 <= i < size:
                    raise ValueError(f"`inputs` holds token id {i}, outside [0, {size - 1}].")
        texts = [self._join_python([self._vocabulary[i] for i in row]) for row in rows]
        return texts if batched else texts[0]

    def _detokenize_tf(self, inputs):
        if self._lookup_table is None:
            self._build_tf_lookup()
        if not isinstance(inputs, tf.RaggedTensor):
            inputs = tf.convert_to_tensor(inputs)
        unbatched = inputs.shape.rank == 1
        if unbatched:
            inputs = tf.expand_dims(inputs, 0)
        if not isinstance(inputs, tf.RaggedTensor):
            inputs = tf.RaggedTensor.from_tensor(inputs)
        tokens = tf.ragged.map_flat_values(tf.gather, self._vocabulary_tensor, inputs)
        texts = self._join_tf(tokens)
        return texts[0] if unbatched else texts

    def call(self, inputs, *args, training=None, **kwargs):
        return self.tokenize(inputs, *args, **kwargs)

    # Assets and config ----------------------------------------------------------------------
    def save_assets(self, dir_path):
        self._check_vocabulary()
        vocab_lib.write_vocabulary_file(self._vocabulary, os.path.join(dir_path, VOCABULARY_FILE))

    def load_assets(self, dir_path):
        self.set_vocabulary(os.path.join(dir_path, VOCABULARY_FILE))

    def get_config(self):
        config = super().get_config()
        config["vocabulary"] = None  # Saved as an asset.
        return config
