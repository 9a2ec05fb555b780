import keras
import pytest
import tensorflow as tf

from keras_unitscale.datasets import load_python_docs
from keras_unitscale.tokenizers import WordPieceTokenizer, train_word_piece


@pytest.fixture(scope="module")
def corpus():
    train, _, _ = load_python_docs()
    return [str(t) for t in train[:150]]


@pytest.fixture(scope="module")
def tokenizer(corpus):
    return train_word_piece(corpus, 1000)


def test_special_token_ids(tokenizer):
    assert tokenizer.get_vocabulary()[:5] == ["[PAD]", "[UNK]", "[START]", "[END]", "[CLS]"]
    assert (tokenizer.pad_token_id, tokenizer.unknown_token_id, tokenizer.start_token_id) == (
        0,
        1,
        2,
    )
    assert (tokenizer.end_token_id, tokenizer.cls_token_id) == (3, 4)
    assert tokenizer.vocabulary_size() <= 1000


def test_round_trip_on_real_text(tokenizer):
    text = "the for statement is used to iterate over the elements of a sequence"
    assert tokenizer.detokenize(tokenizer(text)) == text


def test_tf_data_matches_eager(tokenizer, corpus):
    ds = tf.data.Dataset.from_tensor_slices(corpus[:8]).batch(4).map(tokenizer)
    assert [row for b in ds for row in b.to_list()] == tokenizer(corpus[:8])


def test_assets_and_config_round_trip(tokenizer, tmp_path, corpus):
    tokenizer.save_assets(str(tmp_path))
    restored = keras.layers.deserialize(keras.layers.serialize(tokenizer))
    assert isinstance(restored, WordPieceTokenizer)
    restored.load_assets(str(tmp_path))
    assert restored(corpus[:3]) == tokenizer(corpus[:3])
    assert restored.end_token_id == 3


def test_bad_arguments():
    with pytest.raises(ValueError, match="vocabulary_size"):
        train_word_piece(["a b"], 5)
    with pytest.raises(TypeError, match="corpus"):
        train_word_piece("just one string", 100)
    with pytest.raises(TypeError, match="corpus"):
        train_word_piece(["ok", None], 100)


def test_tf_path_matches_eager_on_edge_cases(tokenizer):
    # All words whole entries (no WordPiece step runs), an empty text, unknown and split
    # words, accents and case, CJK, a word over 100 bytes (unknown, as in TF Text).
    texts = ["the for", "", "The FOR statement, iterates!", "zzqx élan 中文", "a" * 101]
    ragged = tf.function(tokenizer.tokenize)(tf.constant(texts))
    assert ragged.to_list() == tokenizer(texts)
    assert tokenizer(texts)[-1] == [tokenizer.unknown_token_id]
    ids = tf.ragged.constant(tokenizer(texts[:4]))
    assert [t.decode() for t in tf.function(tokenizer.detokenize)(ids).numpy()] == \
        tokenizer.detokenize(tokenizer(texts[:4]))
