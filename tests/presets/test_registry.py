"""The registry of built-in presets and `list_presets`."""

import pytest

import keras_unitscale as ku
from keras_unitscale.presets import BUILTIN_PRESETS, list_presets, read_metadata
from keras_unitscale.presets.registry import is_available

ARCHITECTURES = ["transformer_tiny", "transformer_small", "transformer_base", "lstm_small",
                 "mlp_small"]
TRAINED = ["zh_sentiment_lstm", "zh_sentiment_transformer", "zh_en_translator", "zh_reviews_gpt"]


def test_every_preset_is_registered_and_architectures_are_shipped():
    assert list(BUILTIN_PRESETS) == ARCHITECTURES + TRAINED
    for name in ARCHITECTURES:
        assert is_available(name)
        metadata = read_metadata(name)
        assert metadata["weights"] is False and metadata["task"] is None
        assert metadata["description"] == BUILTIN_PRESETS[name][0]


def test_list_presets_gives_descriptions_and_filters_by_task():
    presets = ku.list_presets()
    assert set(ARCHITECTURES) <= set(presets)
    assert all(isinstance(d, str) and d for d in presets.values())
    assert set(list_presets(include_unavailable=True)) == set(BUILTIN_PRESETS)
    seq2seq = list_presets("Seq2SeqLM", include_unavailable=True)
    assert "lstm_small" not in seq2seq and "zh_en_translator" in seq2seq
    assert "zh_en_translator" not in list_presets(ku.models.CausalLM, include_unavailable=True)
    assert set(list_presets(ku.models.Task, include_unavailable=True)) == set(BUILTIN_PRESETS)


def test_list_presets_rejects_an_unknown_task():
    with pytest.raises(ValueError, match="`task` must be one of"):
        list_presets("ImageClassifier")
