"""In-graph preprocessing for exports: jieba's segmenter, resources, no Python ops."""

import keras
import pytest
import tensorflow as tf

from keras_unitscale.export import graph
from keras_unitscale.tokenizers import JiebaTokenizer, train_word_piece
from presets.tiny_models import ZH, tiny_classifier


def _traced(tokenizer):
    function = tf.function(tokenizer, input_signature=[tf.TensorSpec([None], tf.string)])
    return function.get_concrete_function()


def test_jieba_segments_raw_text_in_the_graph():
    tokenizer = JiebaTokenizer.from_corpus(ZH)
    traced = _traced(tokenizer)
    assert not graph.op_types(traced) & graph.PYTHON_OPS
    assert traced(tf.constant(ZH)).to_list() == tokenizer(ZH)  # raw text, as in Python


def test_check_no_python_names_the_graph():
    with pytest.raises(ValueError, match="The generate graph calls Python"):
        graph.check_no_python({"PyFunc", "MatMul"}, "generate")
    graph.check_no_python({"MatMul"}, "generate")


def test_tf_trackables_finds_the_tokenizers_resources():
    preprocessor = tiny_classifier().preprocessor
    found = graph.tf_trackables(preprocessor)
    assert [type(t).__name__ for t in found] == ["StaticHashTable"]  # the vocabulary
    graph.build_resources([preprocessor.tokenizer])  # jieba's tables, made on first use
    found = graph.tf_trackables(preprocessor)
    assert sorted(type(t).__name__ for t in found) == ["JiebaGraphSegmenter", "StaticHashTable"]
    word_piece = graph.tf_trackables(train_word_piece(["a b c"] * 3, 20))
    assert word_piece and all(not isinstance(t, keras.layers.Layer) for t in word_piece)


def _split_in_python(self, texts):
    words = tf.numpy_function(lambda t: t, [texts], tf.string, stateful=False)
    words.set_shape([None])
    return tf.RaggedTensor.from_row_lengths(words, tf.ones(tf.shape(texts), tf.int64))


def test_a_preprocessor_that_calls_python_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(JiebaTokenizer, "_split_tf", _split_in_python)
    with pytest.raises(ValueError, match="serving_default graph calls Python"):
        tiny_classifier().export(tmp_path)
    assert [p for p in tmp_path.iterdir() if not p.name.startswith(".")] == []
