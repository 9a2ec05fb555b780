"""KerasHub's SentencePiece tokenizer with our special-token names, and a trainer for it."""

import keras
import keras_hub

from keras_unitscale.tokenizers._inputs import as_string, tf

# The pieces `keras_hub.tokenizers.compute_sentence_piece_proto` reserves (ids 0-3).
PAD_PIECE, UNKNOWN_PIECE, START_PIECE, END_PIECE = "<pad>", "<unk>", "<s>", "</s>"


@keras.saving.register_keras_serializable(package="keras_unitscale")
class SentencePieceTokenizer(keras_hub.tokenizers.SentencePieceTokenizer):
    """`keras_hub.tokenizers.SentencePieceTokenizer` exposing the special-token ids our
    preprocessors use: `pad_token_id` (`<pad>`), `unknown_token_id` (`<unk>`),
    `start_token_id` (`<s>`), `end_token_id` (`</s>`) and `cls_token_id` (`<s>` again:
    SentencePiece has no classification piece, and a classifier only needs a fixed first id).

    SentencePiece needs no pre-segmentation, so it handles Chinese, English and mixed text
    alike; `detokenize` restores spaces exactly. Train a model with `train_sentence_piece`.

    Caution (KerasHub/tf-text behaviour): the TensorFlow resource behind the `tf.data` path is
    lost when the global seed is set afterwards (`keras.utils.set_random_seed`,
    `tf.random.set_seed` clear TensorFlow's kernel cache); `tf.data` then fails with "Resource
    ... SentencepieceOp ... does not exist". Set seeds first, or call
    `tokenizer.set_proto(tokenizer.proto)` after setting one.

    Example:

    >>> corpus = ["我喜欢这本书", "这本书很好", "the book is good"] * 20
    >>> tokenizer = train_sentence_piece(corpus, 25)
    >>> tokenizer.detokenize(tokenizer("这本书很好"))
    '这本书很好'
    """

    def __init__(self, proto=None, **kwargs):
        self._add_special_token(PAD_PIECE, "pad_token")
        self._add_special_token(UNKNOWN_PIECE, "unknown_token")
        self._add_special_token(START_PIECE, "start_token")
        self._add_special_token(END_PIECE, "end_token")
        self._add_special_token(START_PIECE, "cls_token")
        super().__init__(proto=proto, **kwargs)


def train_sentence_piece(corpus, vocabulary_size, model_type="unigram", lowercase=False):
    """Trains a SentencePiece model on a corpus and returns a `SentencePieceTokenizer`.

    A thin wrapper over `keras_hub.tokenizers.compute_sentence_piece_proto` (which reserves
    `<pad>`=0, `<unk>`=1, `<s>`=2, `</s>`=3) that accepts an in-memory list of strings.

    Args:
        corpus: an iterable of strings, or a `tf.data.Dataset` of strings.
        vocabulary_size: int, the number of pieces. SentencePiece raises a `RuntimeError`
            naming the largest possible size if the corpus cannot supply that many.
        model_type: "unigram", "bpe", "word" or "char".
        lowercase: bool, case-fold while normalizing.

    Example:

    >>> tokenizer = train_sentence_piece(["hello world", "hello there"] * 10, 14)
    >>> tokenizer.pad_token_id, tokenizer.end_token_id
    (0, 3)
    """
    if not isinstance(corpus, tf.data.Dataset):
        if isinstance(corpus, (str, bytes)):
            raise TypeError("`corpus` must be an iterable of strings, not a single string.")
        texts = [as_string(text, "corpus", i) for i, text in enumerate(corpus)]
        corpus = tf.data.Dataset.from_tensor_slices(tf.constant(texts, dtype=tf.string))
    proto = keras_hub.tokenizers.compute_sentence_piece_proto(
        corpus, vocabulary_size, model_type=model_type, lowercase=lowercase
    )
    return SentencePieceTokenizer(proto=proto)
