import unicodedata

import keras
import pytest
import tensorflow as tf

from keras_unitscale.datasets import load_chinese_sentiment
from keras_unitscale.tokenizers import SentencePieceTokenizer, train_sentence_piece


@pytest.fixture(scope="module")
def reviews():
    (x_train, _), _, _ = load_chinese_sentiment()
    return [str(t) for t in x_train[:1500]]


@pytest.fixture(scope="module")
def tokenizer(reviews):
    # Chinese needs room for its ~2,600 distinct characters plus merged pieces.
    return train_sentence_piece(reviews, 3500)


def test_special_token_ids(tokenizer):
    assert tokenizer.pad_token_id == 0 and tokenizer.unknown_token_id == 1
    assert tokenizer.start_token_id == tokenizer.cls_token_id == 2
    assert tokenizer.end_token_id == 3


def _nfkc(text):
    return " ".join(unicodedata.normalize("NFKC", text).split())


def test_round_trip_on_real_reviews(tokenizer, reviews):
    # SentencePiece normalizes text (mostly NFKC), so compare after NFKC on both sides.
    for text in reviews[:50]:
        assert _nfkc(tokenizer.detokenize(tokenizer(text))) == _nfkc(text)


def test_tf_data_matches_eager(tokenizer, reviews):
    # A fresh tokenizer: KerasHub's tf-text SentencePiece resource does not survive the
    # `keras.utils.set_random_seed` that the suite's autouse fixture calls before each test
    # (TensorFlow clears its kernel cache on a new global seed).
    tokenizer = SentencePieceTokenizer(proto=tokenizer.proto)
    ds = tf.data.Dataset.from_tensor_slices(reviews[:8]).batch(4).map(tokenizer)
    got = [row for b in ds for row in b.to_list()]
    assert got == [list(map(int, tokenizer(t))) for t in reviews[:8]]


def test_assets_and_config_round_trip(tokenizer, tmp_path, reviews):
    tokenizer.save_assets(str(tmp_path))
    restored = keras.layers.deserialize(keras.layers.serialize(tokenizer))
    assert isinstance(restored, SentencePieceTokenizer)
    restored.load_assets(str(tmp_path))
    assert restored(reviews[0]).tolist() == tokenizer(reviews[0]).tolist()
