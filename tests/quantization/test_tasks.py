"""`model.quantize("int8" | "int4")` on the task models: the preprocessor is left alone, the
quantised model predicts, evaluates, generates, and survives `.keras`, presets and export.

Tiny untrained models (random weights): the checks are of plumbing and of equality between a
quantised model and its saved and reloaded copy, which need no training. Outputs are compared
through eager calls (`_forward`), not `predict`, which would compile every model once more.
"""

import keras
import numpy as np
import pytest

from keras_unitscale.models import (
    CausalLM,
    LSTMBackbone,
    Seq2SeqBackbone,
    Seq2SeqLM,
    TextClassifier,
    TransformerDecoderBackbone,
)
from keras_unitscale.preprocessors import (
    CausalLMPreprocessor,
    Seq2SeqLMPreprocessor,
    TextClassifierPreprocessor,
)
from keras_unitscale.quantization import modes
from keras_unitscale.tokenizers import CharacterTokenizer, JiebaTokenizer

ZH = ["我喜欢这本书", "这本书很好", "我很喜欢猫", "猫很好", "你喜欢这本书吗", "他不喜欢"]
EN = ["i like this book", "this book is good", "i like cats", "cats are good", "do you", "no"]
LABELS = np.array([1, 1, 1, 1, 0, 0])


def _forward(model, x):
    """`model`'s outputs on raw text `x`, through its preprocessor, in one eager call."""
    inputs = model.preprocessor(x)
    inputs = inputs[0] if isinstance(inputs, tuple) else inputs
    return keras.ops.convert_to_numpy(model(inputs, training=False))


def _quantised(model, x, mode):
    """`(model, float outputs, quantised outputs)` after `model.quantize(mode)`."""
    keras.utils.set_random_seed(0)
    before = _forward(model, x)
    model.quantize(mode)
    return model, before, _forward(model, x)


@pytest.fixture(scope="module")
def classifier():
    """A jieba-tokenised LSTM classifier (the tokenizer stopped Keras' quantize), int8."""
    keras.utils.set_random_seed(0)
    preprocessor = TextClassifierPreprocessor(JiebaTokenizer.from_corpus(ZH), sequence_length=8)
    backbone = LSTMBackbone(preprocessor.tokenizer.vocabulary_size(), hidden_dim=16)
    model = TextClassifier(backbone, num_classes=2, preprocessor=preprocessor)
    model.compile()
    return _quantised(model, ZH, "int8")


@pytest.fixture(scope="module")
def causal_lm():
    """A tied transformer LM, int4 (blocks of 128, Keras' default)."""
    keras.utils.set_random_seed(0)
    preprocessor = CausalLMPreprocessor(CharacterTokenizer.from_corpus(ZH), sequence_length=8)
    backbone = TransformerDecoderBackbone(
        preprocessor.tokenizer.vocabulary_size(), num_layers=1, num_heads=2, hidden_dim=16,
        intermediate_dim=32, max_sequence_length=8,
    )
    model = CausalLM(backbone, preprocessor)
    model.compile()
    return _quantised(model, ZH, "int4")


@pytest.fixture(scope="module")
def seq2seq():
    """An untied seq2seq model, int8: its readout kernel is the head's own."""
    keras.utils.set_random_seed(0)
    preprocessor = Seq2SeqLMPreprocessor(
        CharacterTokenizer.from_corpus(ZH), CharacterTokenizer.from_corpus(EN), 8, 10
    )
    backbone = Seq2SeqBackbone(
        preprocessor.tokenizer.vocabulary_size(), num_layers=1, num_heads=2, hidden_dim=16,
        intermediate_dim=32, max_sequence_length=10,
        decoder_vocabulary_size=preprocessor.decoder_tokenizer.vocabulary_size(),
    )
    model = Seq2SeqLM(backbone, preprocessor, tie_weights=False)
    model.compile()
    model.quantize("int8")
    return model


def _policies(model):
    return {layer.path: layer.dtype_policy.name for layer in model._flatten_layers()
            if layer.quantization_mode}


def test_classifier_quantises_every_kernel_and_not_the_tokenizer(classifier):
    model, before, after = classifier
    assert model.preprocessor.tokenizer.quantization_mode is None
    assert set(_policies(model)) == {
        "token_embedding", "bidirectional_0/forward_lstm_0/lstm_cell",
        "bidirectional_0/backward_lstm_0/lstm_cell", "logits",
    }
    assert set(_policies(model).values()) == {"int8_from_float32"}
    # int8 moves the outputs by a little of their spread, not by nothing.
    assert 0 < np.abs(after - before).max() < 0.05 * np.abs(before).max() + 1e-3
    results = model.evaluate(ZH, LABELS, verbose=0, return_dict=True)
    assert np.isfinite(results["loss"]) and 0 <= results["accuracy"] <= 1


def test_classifier_keras_file_and_preset_reproduce_it(classifier, tmp_path):
    model, _, after = classifier
    model.save(tmp_path / "model.keras")
    restored = keras.saving.load_model(tmp_path / "model.keras")
    np.testing.assert_array_equal(_forward(restored, ZH), after)
    model.save_to_preset(tmp_path / "preset")
    loaded = TextClassifier.from_preset(str(tmp_path / "preset"))
    np.testing.assert_array_equal(_forward(loaded, ZH), after)
    assert _policies(loaded) == _policies(model)


def test_quantised_weights_take_less_memory(classifier):
    model, _, _ = classifier
    quantised = sum(keras.ops.convert_to_numpy(w).nbytes for w in model.weights)
    config = model.get_config()
    config.pop("quantized_layers")
    config["backbone"]["config"].pop("quantized_layers")
    float_model = TextClassifier.from_config(config)
    assert not _policies(float_model)
    floats = sum(keras.ops.convert_to_numpy(w).nbytes for w in float_model.weights)
    # int8 kernels with float32 scales and biases: between a quarter and a half of float32.
    assert 0.25 * floats < quantised < 0.5 * floats
    # (Files: a tiny model's are mostly HDF5 headers; benchmarks/quantize_presets.py
    # measures the shipped presets' files.)


def test_causal_lm_generates_and_its_preset_predicts_the_same(causal_lm, tmp_path):
    model, before, after = causal_lm
    policies = _policies(model)
    assert {"embeddings/token_embedding", "embeddings/position_embedding",
            "transformer_layer_0/self_attention", "transformer_layer_0/mlp/up",
            "transformer_layer_0/mlp/down"} == set(policies)
    assert set(policies.values()) == {"int4/128_from_float32"}
    assert 0 < np.abs(after - before).max()
    text = model.generate(["我", "这本"], max_length=6)
    assert all(isinstance(t, str) for t in text)
    model.save_to_preset(tmp_path / "preset")
    loaded = CausalLM.from_preset(str(tmp_path / "preset"))
    np.testing.assert_array_equal(_forward(loaded, ZH), after)


def test_seq2seq_quantises_its_untied_readout_and_round_trips(seq2seq, tmp_path):
    model = seq2seq
    assert model.lm_head.quantization_mode == "int8"
    assert model.get_config()["quantized_layers"] == {model.lm_head.path: "int8_from_float32"}
    pairs = {"encoder_text": ZH[:2], "decoder_text": EN[:2]}
    model.save(tmp_path / "model.keras")
    restored = keras.saving.load_model(tmp_path / "model.keras")
    np.testing.assert_array_equal(_forward(restored, pairs), _forward(model, pairs))


def test_a_bad_record_is_a_clear_error(classifier):
    model, _, _ = classifier
    with pytest.raises(ValueError, match="no_such_layer"):
        modes.restore_quantization(model, {"no_such_layer": "int8_from_float32"})
    with pytest.raises(ValueError, match="`filters`"):
        model.quantize("int8", filters=3)
