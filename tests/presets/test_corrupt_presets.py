"""Loading a broken preset (a config without its "config", JSON that does not parse, a
truncated or garbled weights file, a truncated vocabulary) is a `ValueError` that names the
file and what was expected, never a `KeyError` or an h5py error without a path.

A preset records the size and SHA-256 of each file in its `metadata.json` (`files`), checked
before anything is read: any change to a file is refused naming it. The structural checks
serve presets saved before the checksums (and files edited on purpose, their entry deleted):
the cases below check them on a copy whose metadata records none."""

import json
import os
import shutil

import pytest

from keras_unitscale.models.backbone import Backbone
from keras_unitscale.models.seq2seq_lm import Seq2SeqLM
from keras_unitscale.presets import load_preprocessor, load_tokenizer, read_metadata, save_preset
from presets.char_models import char_seq2seq_lm


def _truncate(name, keep=0.5):
    def corrupt(path):
        data = (path / name).read_bytes()
        (path / name).write_bytes(data[:int(len(data) * keep)])

    return corrupt


def _drop(name, *keys):
    def corrupt(path):
        config = json.loads((path / name).read_text(encoding="utf-8"))
        inner = config
        for key in keys[:-1]:
            inner = inner[key]
        del inner[keys[-1]]
        (path / name).write_text(json.dumps(config), encoding="utf-8")

    return corrupt


def _write(name, text):
    def corrupt(path):
        (path / name).write_text(text, encoding="utf-8")

    return corrupt


def _garble_weights(name):
    """Zeroes bytes near the start of an HDF5 file, where its structure is."""
    def corrupt(path):
        data = bytearray((path / name).read_bytes())
        data[96:96 + 1500] = bytes(1500)
        (path / name).write_bytes(bytes(data))

    return corrupt


@pytest.fixture(scope="module")
def preset(tmp_path_factory):
    """A saved Seq2SeqLM preset: every kind of file, two tokenizers, the head's weights."""
    path = tmp_path_factory.mktemp("corrupt") / "seq2seq"
    save_preset(char_seq2seq_lm(seed=5), path)
    return path


VOCABULARY = os.path.join("assets", "tokenizer", "vocabulary.txt")
DECODER_VOCABULARY = os.path.join("assets", "decoder_tokenizer", "vocabulary.txt")
CASES = {
    # name: (how it is loaded, how it is broken, the file the error names, what it also says)
    "config without config": (Backbone, _drop("config.json", "config"), "config.json",
                              'no "config"'),
    "config not an object": (Backbone, _write("config.json", "[1, 2]"), "config.json",
                             "holds a list"),
    "config without class_name": (Backbone, _drop("config.json", "class_name"),
                                  "config.json", 'no "class_name"'),
    "config not json": (Backbone, _write("config.json", '{"config": '), "config.json",
                        "not valid UTF-8 JSON"),
    "task without config": (Seq2SeqLM, _drop("task.json", "config"), "task.json",
                            'no "config"'),
    "task without its backbone": (Seq2SeqLM, _drop("task.json", "config", "backbone"),
                                  "task.json", "under 'backbone'"),
    "task preprocessor without config": (
        Seq2SeqLM, _drop("task.json", "config", "preprocessor", "config"), "task.json",
        "under 'preprocessor'"),
    "task not json": (Seq2SeqLM, _write("task.json", "{"), "task.json", "not valid UTF-8 JSON"),
    "metadata a list": (Seq2SeqLM, _write("metadata.json", "[]"), "metadata.json",
                        "must hold a JSON object"),
    "preprocessor without config": (load_preprocessor, _drop("preprocessor.json", "config"),
                                    "preprocessor.json", 'no "config"'),
    "tokenizer without config": (load_tokenizer, _drop("tokenizer.json", "config"),
                                 "tokenizer.json", 'no "config"'),
    "truncated backbone weights": (Seq2SeqLM, _truncate("model.weights.h5"),
                                   "model.weights.h5", "truncated or corrupt"),
    "empty backbone weights": (Backbone, _truncate("model.weights.h5", 0), "model.weights.h5",
                               "truncated or corrupt"),
    "garbled backbone weights": (Backbone, _garble_weights("model.weights.h5"),
                                 "model.weights.h5", "truncated or corrupt"),
    "backbone weights of another model": (
        Backbone, lambda path: shutil.copy(path / "task.weights.h5", path / "model.weights.h5"),
        "model.weights.h5", "cannot be loaded into the Seq2SeqBackbone"),
    "truncated head weights": (Seq2SeqLM, _truncate("task.weights.h5", 0.9), "task.weights.h5",
                               "truncated or corrupt"),
    "truncated vocabulary": (Seq2SeqLM, _truncate(VOCABULARY, 0.05),
                             os.path.dirname(VOCABULARY), "The tokenizer's vocabulary"),
    "truncated decoder vocabulary": (Seq2SeqLM, _truncate(DECODER_VOCABULARY, 0.05),
                                     os.path.dirname(DECODER_VOCABULARY),
                                     "The decoder_tokenizer's vocabulary"),
    "missing vocabulary file": (load_tokenizer, lambda path: os.remove(path / VOCABULARY),
                                os.path.dirname(VOCABULARY), "No such file"),
}


def _without_checksums(path):
    metadata = json.loads((path / "metadata.json").read_text(encoding="utf-8"))
    del metadata["files"]
    (path / "metadata.json").write_text(json.dumps(metadata), encoding="utf-8")


@pytest.mark.parametrize("case", CASES)
def test_a_broken_preset_is_a_clear_error_naming_the_file(case, preset, tmp_path):
    load, corrupt, file_name, expected = CASES[case]
    path = tmp_path / "copy"
    shutil.copytree(preset, path)
    if file_name != "metadata.json":
        _without_checksums(path)
    corrupt(path)
    if isinstance(load, type):
        def load(directory, cls=load):
            return cls.from_preset(directory)
    with pytest.raises(ValueError) as raised:
        load(str(path))
    message = str(raised.value)
    assert str(path / file_name) in message, message
    assert expected in message, message


def test_an_unbroken_copy_loads(preset, tmp_path):
    """The errors above come from the corruption, not from copying the preset."""
    shutil.copytree(preset, tmp_path / "copy")
    assert type(Seq2SeqLM.from_preset(str(tmp_path / "copy"))) is Seq2SeqLM
    assert type(Backbone.from_preset(str(tmp_path / "copy"))).__name__ == "Seq2SeqBackbone"
    assert load_tokenizer(str(tmp_path / "copy")).vocabulary_size() > 5
    assert read_metadata(str(tmp_path / "copy"))["task"] == "Seq2SeqLM"


# Checksums: every file the save wrote, each kind truncated or with one byte flipped ------
FILES = ["config.json", "task.json", "preprocessor.json", "tokenizer.json",
         "decoder_tokenizer.json", "model.weights.h5", "task.weights.h5", VOCABULARY,
         DECODER_VOCABULARY]


def _flip_byte(name):
    def corrupt(path):
        data = bytearray((path / name).read_bytes())
        data[len(data) // 2] ^= 0x01  # same size: only the checksum can tell
        (path / name).write_bytes(bytes(data))

    return corrupt


def test_the_metadata_records_every_file_the_save_wrote(preset):
    recorded = read_metadata(str(preset))["files"]
    written = sorted(os.path.relpath(os.path.join(root, name), preset).replace(os.sep, "/")
                     for root, _, names in os.walk(preset) for name in names)
    assert sorted(recorded) == [name for name in written if name != "metadata.json"]
    assert sorted(recorded) == sorted(name.replace(os.sep, "/") for name in FILES)
    for name, entry in recorded.items():
        assert entry["bytes"] == os.path.getsize(preset / name) > 0
        assert len(entry["sha256"]) == 64


@pytest.mark.parametrize("corrupt, expected", [
    (_truncate, "incomplete or corrupt"), (_flip_byte, "it is corrupt, its SHA-256"),
], ids=["truncated", "byte-flipped"])
@pytest.mark.parametrize("file_name", FILES)
def test_a_changed_file_is_refused_by_its_checksum(file_name, corrupt, expected, preset,
                                                   tmp_path):
    path = tmp_path / "copy"
    shutil.copytree(preset, path)
    corrupt(file_name)(path)
    for load in (read_metadata, Seq2SeqLM.from_preset, load_tokenizer):
        with pytest.raises(ValueError) as raised:
            load(str(path))
        assert str(path / file_name) in str(raised.value), str(raised.value)
        assert expected in str(raised.value)


def test_a_missing_file_is_refused(preset, tmp_path):
    path = tmp_path / "copy"
    shutil.copytree(preset, path)
    os.remove(path / "task.weights.h5")
    with pytest.raises(FileNotFoundError, match="task.weights.h5 .the head's weights. is "
                                                "missing: the preset is incomplete"):
        Seq2SeqLM.from_preset(str(path))


def test_record_checksums_adds_them_to_an_old_preset_touching_nothing_else(preset, tmp_path):
    from keras_unitscale.presets.saving import record_checksums

    path = tmp_path / "copy"
    shutil.copytree(preset, path)
    _without_checksums(path)
    (path / "notes.txt").write_text("mine")  # not a preset file: not recorded
    before = {name: (path / name).read_bytes() for name in FILES}
    recorded = record_checksums(str(path))
    assert recorded == read_metadata(str(preset))["files"]
    assert {name: (path / name).read_bytes() for name in FILES} == before
    assert read_metadata(str(path))["files"] == recorded
    _flip_byte("model.weights.h5")(path)
    with pytest.raises(ValueError, match="model.weights.h5"):
        read_metadata(str(path))
