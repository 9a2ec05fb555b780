"""`serving_spec`: the signatures of each task's export, as data."""

import keras
import pytest

from keras_unitscale.export import serving_spec
from keras_unitscale.tokenizers import JiebaTokenizer
from presets.tiny_models import tiny_causal_lm, tiny_classifier, tiny_seq2seq_lm


def test_classifier_spec():
    spec = serving_spec(tiny_classifier())
    signatures = spec["signatures"]
    assert spec["task"] == "TextClassifier" and sorted(signatures) == [
        "serving_default", "token_ids"]
    assert signatures["serving_default"]["inputs"] == {"text": {"dtype": "string",
                                                                "shape": [-1]}}
    assert signatures["token_ids"]["inputs"]["padding_mask"] == {"dtype": "int32",
                                                                 "shape": [-1, -1]}
    assert signatures["serving_default"]["outputs"] == ["logits", "probabilities", "label"]
    assert spec["format"] == 2 and spec["presegmented"] == []  # jieba: raw text in
    assert "jieba" not in spec


def test_language_model_specs():
    causal = serving_spec(tiny_causal_lm())
    assert causal["presegmented"] == [] and causal["max_sequence_length"] == 8
    assert list(causal["signatures"]["generate"]["inputs"]) == ["prompt", "max_length"]
    assert causal["signatures"]["generate"]["inputs"]["max_length"]["shape"] == []
    seq2seq = serving_spec(tiny_seq2seq_lm())
    signatures = seq2seq["signatures"]
    assert list(signatures["serving_default"]["inputs"]) == ["encoder_text", "decoder_text"]
    assert list(signatures["generate"]["inputs"]) == ["encoder_text", "max_length"]
    assert signatures["generate_token_ids"]["outputs"] == [
        "decoder_token_ids", "decoder_padding_mask"]
    assert seq2seq["presegmented"] == []


def test_without_a_preprocessor_every_signature_takes_ids():
    task = tiny_causal_lm()
    task.preprocessor = None
    signatures = serving_spec(task)["signatures"]
    assert sorted(signatures) == ["generate_token_ids", "serving_default", "token_ids"]
    assert signatures["serving_default"] == signatures["token_ids"]


def test_presegmented_tokenizers_are_named():
    task = tiny_classifier()
    vocabulary = task.preprocessor.tokenizer.get_vocabulary()
    task.preprocessor.tokenizer = JiebaTokenizer(vocabulary, presegmented=True)
    assert serving_spec(task)["presegmented"] == ["text"]  # words separated by spaces


def test_other_models_are_refused():
    with pytest.raises(ValueError, match="`task` must be a keras_unitscale TextClassifier"):
        serving_spec(keras.Sequential([keras.layers.Dense(1)]))
