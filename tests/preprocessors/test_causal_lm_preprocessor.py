import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_unitscale.preprocessors import CausalLMPreprocessor
from keras_unitscale.tokenizers import CharacterTokenizer, JiebaTokenizer

LENGTH = 24


@pytest.fixture(scope="module")
def tokenizer(reviews):
    return JiebaTokenizer.from_corpus(reviews[0])


@pytest.fixture()
def preprocessor(tokenizer):
    return CausalLMPreprocessor(tokenizer, sequence_length=LENGTH)


def test_labels_are_inputs_shifted(preprocessor, tokenizer, reviews, numpy_tree):
    texts = reviews[0][:4]
    x, y, w = numpy_tree(preprocessor(texts))
    assert sorted(x) == ["padding_mask", "token_ids"]
    assert x["token_ids"].shape == y.shape == w.shape == (4, LENGTH) and w.dtype == np.float32
    assert np.array_equal(x["token_ids"][:, 1:], y[:, :-1])
    for row, weights, text in zip(y, w, texts):
        # Like KerasHub's packer, truncation keeps the [END] token.
        stream = tokenizer(text).tolist()[: LENGTH - 1] + [tokenizer.end_token_id]
        assert row[: len(stream)].tolist() == stream
        assert weights.sum() == len(stream)
    assert (x["token_ids"][:, 0] == tokenizer.start_token_id).all()


def test_sequence_length_override(preprocessor, numpy_tree):
    x, y, _ = numpy_tree(preprocessor(["很好"], sequence_length=5))
    assert x["token_ids"].shape == y.shape == (1, 5)


@pytest.mark.parametrize("batch", [None, 6])
def test_tf_data_matches_eager(preprocessor, reviews, batch, numpy_tree):
    texts = reviews[0][:12]
    ds = tf.data.Dataset.from_tensor_slices(texts)
    ds = ds.map(preprocessor) if batch is None else ds.batch(batch).map(preprocessor)
    got = [numpy_tree(e) for e in ds]
    stack = np.stack if batch is None else np.concatenate
    x, y, w = numpy_tree(preprocessor(texts))
    assert np.array_equal(stack([g[0]["token_ids"] for g in got]), x["token_ids"])
    assert np.array_equal(stack([g[1] for g in got]), y)
    assert np.array_equal(stack([g[2] for g in got]), w)


def test_pack_dataset(preprocessor, tokenizer, reviews, numpy_tree):
    texts = reviews[0][:30]
    stream = []
    for text in texts:
        stream += [tokenizer.start_token_id] + tokenizer(text).tolist() + [tokenizer.end_token_id]
    for source in (
        tf.data.Dataset.from_tensor_slices(texts),
        tf.data.Dataset.from_tensor_slices(texts).batch(7),
    ):
        windows = [numpy_tree(e) for e in preprocessor.pack_dataset(source)]
        assert len(windows) == len(stream) // (LENGTH + 1)
        for i, (x, y, w) in enumerate(windows):
            chunk = stream[i * (LENGTH + 1) : (i + 1) * (LENGTH + 1)]
            assert x["token_ids"].tolist() == chunk[:-1] and y.tolist() == chunk[1:]
            assert x["padding_mask"].all() and (w == 1).all()
    with pytest.raises(ValueError, match="must yield strings"):
        preprocessor.pack_dataset(tf.data.Dataset.from_tensor_slices(([1], [2])))


def test_generate_round_trip(preprocessor, reviews, numpy_tree):
    texts = reviews[0][:5]
    prompt = numpy_tree(preprocessor.generate_preprocess(texts, sequence_length=400))
    assert prompt["token_ids"].shape == (5, 400)
    expected = [re.sub(r"\s+", " ", t).strip() for t in texts]
    assert preprocessor.generate_postprocess(prompt) == expected
    graph = tf.function(preprocessor.generate_postprocess)(
        {k: tf.constant(v) for k, v in prompt.items()}
    )
    assert [t.decode() for t in graph.numpy()] == expected


def test_detokenize_stops_at_end(preprocessor, tokenizer):
    a, b = tokenizer.token_to_id("酒店"), tokenizer.token_to_id("不错")
    ids = np.array([tokenizer.start_token_id, a, b, tokenizer.end_token_id, a, 0])
    assert preprocessor.detokenize(ids) == "酒店不错"
    assert preprocessor.detokenize(np.stack([ids, ids])) == ["酒店不错"] * 2


@pytest.mark.filterwarnings("ignore:Your input ran out of data")  # Packed: unknown length.
def test_trains_with_model_fit(reviews):
    texts = reviews[0][:128]
    small = JiebaTokenizer.from_corpus(texts, max_size=300)  # A small softmax keeps it quick.
    preprocessor = CausalLMPreprocessor(small, sequence_length=LENGTH)
    ids = keras.Input((LENGTH,), dtype="int32", name="token_ids")
    mask = keras.Input((LENGTH,), dtype="bool", name="padding_mask")
    hidden = keras.layers.Embedding(300, 8)(ids)
    hidden = hidden * keras.ops.expand_dims(keras.ops.cast(mask, "float32"), -1)
    model = keras.Model({"token_ids": ids, "padding_mask": mask}, keras.layers.Dense(300)(hidden))
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    padded = tf.data.Dataset.from_tensor_slices(texts).batch(32).map(preprocessor)
    packed = preprocessor.pack_dataset(tf.data.Dataset.from_tensor_slices(texts))
    for ds in (padded, packed.batch(32, drop_remainder=True)):
        assert np.isfinite(model.fit(ds, epochs=1, verbose=0, shuffle=False).history["loss"]).all()


def test_character_tokenizer_and_keras_file_round_trip(reviews, keras_file_round_trip, numpy_tree):
    chars = CharacterTokenizer.from_corpus(reviews[0][:200])
    original = CausalLMPreprocessor(chars, sequence_length=16, add_end_token=False)
    restored = keras_file_round_trip(original)
    assert restored.get_config()["add_end_token"] is False
    a, b = numpy_tree(original(reviews[0][:3])), numpy_tree(restored(reviews[0][:3]))
    assert np.array_equal(a[0]["token_ids"], b[0]["token_ids"]) and np.array_equal(a[1], b[1])


def test_bad_inputs(preprocessor, tokenizer):
    with pytest.raises(ValueError, match="derives `y`"):
        preprocessor(["很好"], np.array([1]))
    with pytest.raises(TypeError, match="`x` must be a string"):
        preprocessor(None)
    with pytest.raises(TypeError, match="`x` must be a string"):
        preprocessor(5)
    with pytest.raises(ValueError, match="`sequence_length` must be an int >= 1"):
        CausalLMPreprocessor(tokenizer, sequence_length=0)
    with pytest.raises(TypeError, match="`tokenizer` must be a tokenizer"):
        CausalLMPreprocessor("jieba")
    with pytest.raises(ValueError, match="has no pad_token_id"):
        CausalLMPreprocessor(JiebaTokenizer())(["很好"])
    with pytest.raises(TypeError, match="integer"):
        preprocessor.detokenize(np.array([1.0, 2.0]))
