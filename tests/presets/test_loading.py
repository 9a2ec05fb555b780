"""Loading presets: exact round trips of every task, architecture presets by name and path,
overrides, across backends, and bad input."""

import json
import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest

from presets.tiny_models import BUILDERS, outputs
from keras_unitscale.models.backbone import Backbone
from keras_unitscale.models.backbones import (
    LSTMBackbone,
    TransformerDecoderBackbone,
    TransformerEncoderBackbone,
)
from keras_unitscale.models.causal_lm import CausalLM
from keras_unitscale.models.seq2seq_backbone import Seq2SeqBackbone
from keras_unitscale.models.seq2seq_lm import Seq2SeqLM
from keras_unitscale.models.task import Task
from keras_unitscale.models.text_classifier import TextClassifier
from keras_unitscale.presets import load_preprocessor, load_tokenizer, read_metadata
from keras_unitscale.presets.registry import builtin_dir

CLASSES = {"classifier": TextClassifier, "causal_lm": CausalLM, "seq2seq_lm": Seq2SeqLM}


@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_from_preset_reproduces_outputs_exactly(saved_presets, kind):
    path, expected = saved_presets[kind]
    task = CLASSES[kind].from_preset(path)
    assert type(task) is CLASSES[kind]
    np.testing.assert_array_equal(outputs(task, kind), expected)
    assert task.compiled  # ready to fit or evaluate


def test_base_classes_load_what_the_preset_holds(saved_presets):
    path, expected = saved_presets["causal_lm"]
    task = Task.from_preset(path)
    assert type(task) is CausalLM
    np.testing.assert_array_equal(outputs(task, "causal_lm"), expected)
    backbone = Backbone.from_preset(path)
    assert type(backbone) is TransformerDecoderBackbone
    for mine, saved in zip(backbone.weights, task.backbone.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(mine),
                                      keras.ops.convert_to_numpy(saved))


def test_preprocessor_and_tokenizers_load_alone(saved_presets):
    path, _ = saved_presets["seq2seq_lm"]
    preprocessor = load_preprocessor(path)
    assert preprocessor.detokenize(preprocessor.decoder_tokenizer(["hello"])) == ["hello"]
    assert load_tokenizer(path, "decoder_tokenizer").vocabulary_size() == (
        preprocessor.decoder_tokenizer.vocabulary_size())
    assert load_tokenizer(path).get_vocabulary() == preprocessor.tokenizer.get_vocabulary()


def test_overrides_go_to_the_task_backbone_and_preprocessor(saved_presets):
    path, _ = saved_presets["classifier"]
    task = TextClassifier.from_preset(path, pooling="max", sequence_length=6, name="mine",
                                      dtype="mixed_bfloat16")
    assert (task.pooling, task.preprocessor.sequence_length, task.name) == ("max", 6, "mine")
    assert task.backbone.dtype_policy.name == "mixed_bfloat16"
    with pytest.raises(ValueError, match="Unknown override 'colour'.*num_classes"):
        TextClassifier.from_preset(path, colour="red")


def test_a_new_head_shape_keeps_the_backbone_and_warns(saved_presets):
    path, _ = saved_presets["classifier"]
    with pytest.warns(UserWarning, match="num_classes"):
        task = TextClassifier.from_preset(path, num_classes=3)
    assert tuple(task.output.shape) == (None, 3)
    original = TextClassifier.from_preset(path)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(task.backbone.weights[0]),
        keras.ops.convert_to_numpy(original.backbone.weights[0]),
    )


def test_load_weights_false_initialises_fresh_weights(saved_presets):
    path, expected = saved_presets["seq2seq_lm"]
    keras.utils.set_random_seed(7)
    task = Seq2SeqLM.from_preset(path, load_weights=False)
    assert not np.array_equal(outputs(task, "seq2seq_lm"), expected)


# Architecture presets ------------------------------------------------------------------------
def test_architecture_presets_by_name_are_untrained_sizes():
    metadata = read_metadata("transformer_small")
    assert metadata["weights"] is False and metadata["parameter_count"] > 8_000_000
    backbone = TransformerEncoderBackbone.from_preset("transformer_tiny", vocabulary_size=30)
    assert (backbone.num_layers, backbone.hidden_dim, backbone.vocabulary_size) == (2, 64, 30)
    lstm = LSTMBackbone.from_preset("lstm_small", vocabulary_size=30, hidden_dim=8)
    assert (lstm.num_layers, lstm.bidirectional, lstm.dropout) == (2, True, 0.1)


def test_each_task_builds_its_backbone_kind_from_an_architecture_preset():
    from presets import tiny_models

    classifier = TextClassifier.from_preset(
        "transformer_tiny", num_classes=3, preprocessor=tiny_models.classifier_preprocessor()
    )
    assert type(classifier.backbone) is TransformerEncoderBackbone
    assert classifier.backbone.vocabulary_size == (
        classifier.preprocessor.tokenizer.vocabulary_size())
    lm = CausalLM.from_preset(
        "transformer_tiny", preprocessor=tiny_models.causal_lm_preprocessor()
    )
    assert type(lm.backbone) is TransformerDecoderBackbone
    translator = Seq2SeqLM.from_preset(
        "transformer_tiny", preprocessor=tiny_models.seq2seq_lm_preprocessor()
    )
    assert type(translator.backbone) is Seq2SeqBackbone
    assert translator.backbone.decoder_vocabulary_size == (
        translator.preprocessor.decoder_tokenizer.vocabulary_size())
    lstm_lm = CausalLM.from_preset("lstm_small", vocabulary_size=20, hidden_dim=8,
                                   embedding_dim=8, num_layers=1)
    assert lstm_lm.backbone.bidirectional is False
    decoder = TransformerDecoderBackbone.from_preset("transformer_tiny", vocabulary_size=20)
    assert decoder.num_layers == 2
    with pytest.raises(ValueError, match="cannot make a Seq2SeqLM"):
        Seq2SeqLM.from_preset("lstm_small")
    with pytest.raises(ValueError, match="needs `num_classes=`"):
        TextClassifier.from_preset("transformer_tiny")


def test_architecture_preset_by_path(tmp_path):
    path = tmp_path / "copy"
    shutil.copytree(builtin_dir("transformer_tiny"), path)
    backbone = Backbone.from_preset(str(path), vocabulary_size=10)
    assert type(backbone) is TransformerEncoderBackbone


# Across backends ----------------------------------------------------------------------------
_SAVE_UNDER_OTHER_BACKEND = """
import sys, numpy as np
sys.path.insert(0, sys.argv[2])
import keras
from keras_unitscale.presets import save_preset
from tiny_models import tiny_classifier, outputs
keras.utils.set_random_seed(3)
task = tiny_classifier()
save_preset(task, sys.argv[1])
np.save(sys.argv[1] + ".npy", outputs(task, "classifier"))
"""


def test_a_preset_saved_under_the_other_backend_loads_here(tmp_path):
    here = keras.backend.backend()
    other = "jax" if here == "tensorflow" else "tensorflow"
    path = str(tmp_path / "preset")
    env = {**os.environ, "KERAS_BACKEND": other, "TF_CPP_MIN_LOG_LEVEL": "3"}
    subprocess.run(
        [sys.executable, "-c", _SAVE_UNDER_OTHER_BACKEND, path, os.path.dirname(__file__)],
        env=env, check=True, capture_output=True, timeout=300,
    )
    assert read_metadata(path)["backend"] == other
    task = TextClassifier.from_preset(path)
    np.testing.assert_allclose(outputs(task, "classifier"), np.load(path + ".npy"),
                               rtol=1e-5, atol=1e-5)


# Bad input ----------------------------------------------------------------------------------
def test_an_unknown_name_lists_valid_names_and_close_matches():
    with pytest.raises(ValueError) as error:
        TextClassifier.from_preset("zh_sentimint_lstm")
    message = str(error.value)
    assert "did you mean 'zh_sentiment_lstm'" in message
    assert "transformer_base" in message and "lstm_small" in message


def test_a_preset_of_another_task_is_refused(saved_presets):
    path, _ = saved_presets["causal_lm"]
    with pytest.raises(ValueError, match="is a CausalLM preset, not a TextClassifier"):
        TextClassifier.from_preset(path)
    with pytest.raises(ValueError, match="holds a TransformerDecoderBackbone, not a LSTM"):
        LSTMBackbone.from_preset(path)
    with pytest.raises(ValueError, match="holds only a backbone"):
        Task.from_preset("transformer_tiny")


@pytest.mark.parametrize("missing", ["config.json", "model.weights.h5", "task.json",
                                     "metadata.json", "assets"])
def test_missing_files_are_named(saved_presets, tmp_path, missing):
    path = tmp_path / "broken"
    shutil.copytree(saved_presets["classifier"][0], path)
    target = path / missing
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    # A task reads task.json (the backbone nested); Backbone.from_preset reads config.json.
    load = Backbone.from_preset if missing == "config.json" else TextClassifier.from_preset
    with pytest.raises(FileNotFoundError, match=missing):
        load(str(path))


def test_a_newer_format_is_refused(saved_presets, tmp_path):
    path = tmp_path / "future"
    shutil.copytree(saved_presets["classifier"][0], path)
    metadata = json.loads((path / "metadata.json").read_text())
    metadata["format_version"] = 99
    (path / "metadata.json").write_text(json.dumps(metadata))
    with pytest.raises(ValueError, match="format 99.*Upgrade keras-unitscale"):
        TextClassifier.from_preset(str(path))


def test_a_builtin_preset_not_trained_yet_says_so(tmp_path, monkeypatch):
    from keras_unitscale.presets import registry

    # Point the built-in directory somewhere empty: as in a checkout before train_presets.py.
    monkeypatch.setattr(registry, "BUILTIN_DIR", str(tmp_path))
    trained = [name for name, (_, _, is_trained) in registry.BUILTIN_PRESETS.items()
               if is_trained]
    assert trained and not registry.is_available(trained[0])
    with pytest.raises(FileNotFoundError, match="not been trained yet.*train_presets.py"):
        Task.from_preset(trained[0])


def test_a_preset_is_a_name_or_a_directory(tmp_path):
    with pytest.raises(ValueError, match="preset name or a directory path"):
        TextClassifier.from_preset(42)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        TextClassifier.from_preset(str(tmp_path / "file"))
