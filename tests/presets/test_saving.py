"""Saving presets: KerasHub's layout, metadata, the head's own weights, overwrite rules."""

import json
import os

import keras
import pytest

from keras_unitscale.presets import FORMAT_VERSION, save_preset


def test_a_task_preset_has_kerashubs_layout(saved_presets):
    path = saved_presets["seq2seq_lm"][0]
    assert sorted(os.listdir(path)) == [
        "assets", "config.json", "decoder_tokenizer.json", "metadata.json", "model.weights.h5",
        "preprocessor.json", "task.json", "task.weights.h5", "tokenizer.json",
    ]
    assert sorted(os.listdir(os.path.join(path, "assets"))) == ["decoder_tokenizer", "tokenizer"]
    assert "vocabulary.txt" in os.listdir(os.path.join(path, "assets", "tokenizer"))
    task = json.load(open(os.path.join(path, "task.json"), encoding="utf-8"))
    assert task["class_name"] == "Seq2SeqLM"
    assert task["config"]["backbone"]["class_name"] == "Seq2SeqBackbone"
    assert "compile_config" not in json.dumps(task)  # no training state in a preset


def test_metadata_records_versions_backend_format_and_size(saved_presets):
    import keras_unitscale

    metadata = json.load(open(os.path.join(saved_presets["classifier"][0], "metadata.json")))
    assert metadata["format_version"] == FORMAT_VERSION
    assert metadata["keras_version"] == keras.version()
    assert metadata["keras_unitscale_version"] == keras_unitscale.__version__
    assert metadata["backend"] == keras.backend.backend()
    assert (metadata["class_name"], metadata["task"], metadata["backbone"]) == (
        "TextClassifier", "TextClassifier", "LSTMBackbone")
    assert metadata["parameter_count"] > 0 and metadata["weights"] is True
    assert metadata["label_names"] == ["negative", "positive"]  # extra fields


def test_a_tied_head_has_no_task_weights(saved_presets):
    assert "task.weights.h5" not in os.listdir(saved_presets["causal_lm"][0])
    assert "task.weights.h5" in os.listdir(saved_presets["classifier"][0])


def test_save_to_preset_refuses_a_non_empty_directory_unless_overwrite(tmp_path):
    from presets.tiny_models import tiny_classifier

    task = tiny_classifier()
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty.*overwrite=True"):
        task.save_to_preset(str(tmp_path))
    assert os.listdir(tmp_path) == ["notes.txt"]
    (tmp_path / "task.weights.h5").write_text("stale")  # left by an earlier save
    task.backbone.save_to_preset(str(tmp_path), overwrite=True)
    assert sorted(os.listdir(tmp_path)) == [
        "config.json", "metadata.json", "model.weights.h5", "notes.txt"]
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_only_backbones_and_tasks_are_saved(tmp_path):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    with pytest.raises(ValueError, match="Backbone` or `Task`"):
        save_preset(model, tmp_path / "x")
    (tmp_path / "file").write_text("")
    from keras_unitscale.models.backbones import LSTMBackbone

    with pytest.raises(ValueError, match="is a file"):
        save_preset(LSTMBackbone(10, hidden_dim=2), tmp_path / "file")


def test_an_architecture_preset_has_no_weights(tmp_path):
    from keras_unitscale.models.backbones import LSTMBackbone

    save_preset(LSTMBackbone(10, hidden_dim=2), tmp_path / "arch", include_weights=False)
    assert sorted(os.listdir(tmp_path / "arch")) == ["config.json", "metadata.json"]
    assert json.load(open(tmp_path / "arch" / "metadata.json"))["weights"] is False
