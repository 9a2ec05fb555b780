"""In-graph preprocessing for exports: jieba's pre-segmented path, resources, no Python ops."""

import keras
import pytest
import tensorflow as tf

from keras_unitscale.export import graph
from keras_unitscale.export import spec as spec_lib
from keras_unitscale.tokenizers import JiebaTokenizer, train_word_piece
from presets.tiny_models import ZH, tiny_classifier


def _traced(tokenizer):
    function = tf.function(tokenizer, input_signature=[tf.TensorSpec([None], tf.string)])
    return function.get_concrete_function()


def test_jieba_runs_in_the_graph_only_when_presegmented():
    tokenizer = JiebaTokenizer.from_corpus(ZH)
    assert "PyFuncStateless" in graph.op_types(_traced(tokenizer))
    with graph.presegmented([tokenizer]):
        traced = _traced(tokenizer)
    assert not tokenizer.presegmented
    assert not graph.op_types(traced) & graph.PYTHON_OPS
    ids = traced(tf.constant([" ".join(tokenizer.segment(ZH[0]))]))  # still in-graph
    assert ids.to_list() == [list(tokenizer(ZH[0]))]


def test_presegmented_restores_the_tokenizers_on_errors():
    tokenizer = JiebaTokenizer.from_corpus(ZH)
    with pytest.raises(RuntimeError):
        with graph.presegmented([tokenizer]):
            raise RuntimeError
    assert not tokenizer.presegmented


def test_check_no_python_names_the_graph():
    with pytest.raises(ValueError, match="The generate graph calls Python"):
        graph.check_no_python({"PyFunc", "MatMul"}, "generate")
    graph.check_no_python({"MatMul"}, "generate")


def test_tf_trackables_finds_the_tokenizers_resources():
    found = graph.tf_trackables(tiny_classifier().preprocessor)
    assert [type(t).__name__ for t in found] == ["StaticHashTable"]
    word_piece = graph.tf_trackables(train_word_piece(["a b c"] * 3, 20))
    assert word_piece and all(not isinstance(t, keras.layers.Layer) for t in word_piece)


def test_a_preprocessor_that_calls_python_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(spec_lib, "jieba_inputs", lambda task: {})  # jieba left on Python
    with pytest.raises(ValueError, match="serving_default graph calls Python"):
        tiny_classifier().export(tmp_path)
    assert [p for p in tmp_path.iterdir() if not p.name.startswith(".")] == []
