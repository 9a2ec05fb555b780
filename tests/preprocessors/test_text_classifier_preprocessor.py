import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_unitscale.preprocessors import TextClassifierPreprocessor
from keras_unitscale.tokenizers import JiebaTokenizer, WordPieceTokenizer

LENGTH = 32


@pytest.fixture(scope="module")
def tokenizer(reviews):
    return JiebaTokenizer.from_corpus(reviews[0], min_frequency=2)


@pytest.fixture()
def preprocessor(tokenizer):
    return TextClassifierPreprocessor(tokenizer, sequence_length=LENGTH)


def test_eager_outputs(preprocessor, tokenizer, reviews, numpy_tree):
    texts, labels = reviews[0][:4], reviews[1][:4]
    x, y = preprocessor(texts, labels)
    x = numpy_tree(x)
    assert sorted(x) == ["padding_mask", "token_ids"]
    assert x["token_ids"].shape == x["padding_mask"].shape == (4, LENGTH)
    assert x["token_ids"].dtype == np.int32 and x["padding_mask"].dtype == bool
    assert (x["token_ids"][:, 0] == tokenizer.cls_token_id).all()
    for row, mask, text in zip(x["token_ids"], x["padding_mask"], texts):
        ids = tokenizer(text).tolist()[: LENGTH - 1]
        assert row[1 : 1 + len(ids)].tolist() == ids
        assert mask.sum() == 1 + len(ids) and not row[mask.sum() :].any()
    assert np.array_equal(y, labels)


def test_single_string_and_without_cls(tokenizer, numpy_tree):
    x = numpy_tree(TextClassifierPreprocessor(tokenizer, 8, add_cls_token=False)("酒店不错"))
    assert x["token_ids"].shape == (8,)
    assert x["token_ids"][0] != tokenizer.cls_token_id


@pytest.mark.parametrize("batch", [None, 8])
def test_tf_data_matches_eager(preprocessor, reviews, batch, numpy_tree):
    texts, labels = reviews[0][:16], reviews[1][:16]
    ds = tf.data.Dataset.from_tensor_slices((texts, labels))
    ds = ds.map(preprocessor) if batch is None else ds.batch(batch).map(preprocessor)
    assert ds.element_spec[0]["token_ids"].shape[-1] == LENGTH
    got = [numpy_tree(x) for x, _ in ds]
    if batch is None:
        got = [{k: np.stack([g[k] for g in got]) for k in got[0]}]
    expected = numpy_tree(preprocessor(texts))
    for key in ("token_ids", "padding_mask"):
        assert np.array_equal(np.concatenate([g[key] for g in got]), expected[key])


def test_trains_with_model_fit(preprocessor, tokenizer, reviews):
    ids = keras.Input((LENGTH,), dtype="int32", name="token_ids")
    mask = keras.Input((LENGTH,), dtype="bool", name="padding_mask")
    embedded = keras.layers.Embedding(tokenizer.vocabulary_size(), 8)(ids)
    weights = keras.ops.expand_dims(keras.ops.cast(mask, "float32"), -1)
    pooled = keras.ops.sum(embedded * weights, axis=1) / keras.ops.sum(weights, axis=1)
    model = keras.Model({"token_ids": ids, "padding_mask": mask}, keras.layers.Dense(2)(pooled))
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    ds = tf.data.Dataset.from_tensor_slices((reviews[0][:256], reviews[1][:256]))
    history = model.fit(ds.batch(64).map(preprocessor), epochs=1, verbose=0, shuffle=False)
    assert np.isfinite(history.history["loss"]).all()


def test_works_with_keras_hub_word_piece(numpy_tree):
    tokenizer = WordPieceTokenizer(
        vocabulary=["[PAD]", "[UNK]", "[START]", "[END]", "[CLS]", "good", "book"]
    )
    x = numpy_tree(TextClassifierPreprocessor(tokenizer, 5)(["good book", "bad"]))
    assert x["token_ids"].tolist() == [[4, 5, 6, 0, 0], [4, 1, 0, 0, 0]]


def test_bad_arguments_and_inputs(tokenizer, preprocessor, numpy_tree):
    with pytest.raises(TypeError, match="`tokenizer` must be a tokenizer"):
        TextClassifierPreprocessor(None)
    with pytest.raises(ValueError, match="`sequence_length` must be an int >= 2"):
        TextClassifierPreprocessor(tokenizer, sequence_length=1)
    with pytest.raises(TypeError, match="`x` must be a string"):
        preprocessor(None)
    with pytest.raises(TypeError, match="`x` must be a string"):
        preprocessor(np.array([1, 2]))
    with pytest.raises(TypeError, match="element 1"):
        preprocessor(["好", 2])
    with pytest.raises(ValueError, match="has no pad_token_id"):
        TextClassifierPreprocessor(JiebaTokenizer())("好")
    x = numpy_tree(preprocessor(""))  # Empty text: just [CLS], documented.
    assert x["padding_mask"].sum() == 1


def test_config_and_keras_file_round_trip(preprocessor, reviews, keras_file_round_trip, numpy_tree):
    config = preprocessor.get_config()
    assert config["sequence_length"] == LENGTH and config["add_cls_token"] is True
    restored = keras_file_round_trip(preprocessor)
    assert isinstance(restored, TextClassifierPreprocessor)
    texts = reviews[0][:5]
    a, b = numpy_tree(preprocessor(texts)), numpy_tree(restored(texts))
    assert all(np.array_equal(a[k], b[k]) for k in a)
