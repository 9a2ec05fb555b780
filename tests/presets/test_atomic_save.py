"""`save_preset` is atomic: a failure at any step, in any writer or in the swap into place,
leaves the directory as it was, byte for byte, with nothing left behind; metadata and
arguments are checked before anything is written."""

import json
import os
import re

import keras
import numpy as np
import pytest

from file_snapshots import Injected, snapshot
from keras_unitscale.presets import atomic, load_preset, save_preset
from keras_unitscale.presets import layout
from presets.char_models import char_seq2seq_lm


class Faults:
    """Wraps every writer of a save and the steps of the swap; `fail_at = k` makes the k-th
    call write part of its output (where it writes one) and raise `Injected`."""

    def __init__(self, monkeypatch, task):
        self.calls, self.fail_at = [], None
        write_text, save_weights = layout.write_text, keras.saving.save_weights
        rename, make_temp_dir = atomic._rename, atomic._make_temp_dir

        def step(label, partial):
            self.calls.append(label)
            if len(self.calls) - 1 == self.fail_at:
                partial()
                raise Injected(label)

        def fake_write_text(path, text):
            step(f"write {os.path.basename(path)}", lambda: write_text(path, text[:20]))
            write_text(path, text)

        def fake_save_weights(model, path, **kwargs):
            def partial():
                with open(path, "wb") as f:
                    f.write(b"\x89HDF\r\n\x1a\n" + b"\0" * 40)  # a truncated HDF5 file

            step(f"weights {os.path.basename(path)}", partial)
            save_weights(model, path, **kwargs)

        def fake_rename(source, destination):
            # Staging and backup names end in a random part: the label leaves it out.
            name = re.sub(r"-[0-9a-f]{8}$", "", os.path.basename(source))
            step(f"rename {name}", lambda: None)
            rename(source, destination)

        def fake_make_temp_dir(parent, kind):
            step(f"mkdir {kind}", lambda: None)
            return make_temp_dir(parent, kind)

        monkeypatch.setattr(layout, "write_text", fake_write_text)
        monkeypatch.setattr(keras.saving, "save_weights", fake_save_weights)
        monkeypatch.setattr(atomic, "_rename", fake_rename)
        monkeypatch.setattr(atomic, "_make_temp_dir", fake_make_temp_dir)
        from keras_unitscale.presets.saving import tokenizers_of

        for _, tokenizer in tokenizers_of(task.preprocessor):
            klass = type(tokenizer)
            save_assets = klass.save_assets

            def fake_save_assets(self, dir_path, save_assets=save_assets):
                def partial():
                    with open(os.path.join(dir_path, "vocabulary.txt"), "w") as f:
                        f.write("[PAD]\n")

                step(f"assets {os.path.basename(dir_path)}", partial)
                save_assets(self, dir_path)

            monkeypatch.setattr(klass, "save_assets", fake_save_assets)

    def count(self, save):
        """The steps of `save()` when nothing fails."""
        self.calls, self.fail_at = [], None
        save()
        return list(self.calls)

    def fail(self, k, save, steps):
        """Runs `save()` failing at its step `k`, which must be `steps[k]` (as counted)."""
        self.calls, self.fail_at = [], k
        with pytest.raises(Injected) as raised:
            save()
        assert self.calls[:k + 1] == steps[:k + 1] and str(raised.value) == steps[k]


@pytest.fixture(scope="module")
def tasks():
    """Two tiny Seq2SeqLMs with different weights."""
    return char_seq2seq_lm(seed=3), char_seq2seq_lm(seed=4)


def test_a_failure_at_any_step_of_an_overwrite_leaves_the_old_preset(tasks, tmp_path,
                                                                      monkeypatch):
    old, new = tasks
    area, scratch = tmp_path / "area", tmp_path / "scratch"
    preset = area / "preset"
    save_preset(old, preset)
    (preset / "notes.txt").write_text("mine")  # not a preset file: kept by `overwrite`
    (preset / "task.weights.h5").unlink()
    (preset / "task.weights.h5").write_bytes(b"stale")
    before = snapshot(area)
    save_preset(old, scratch / "preset")
    faults = Faults(monkeypatch, new)
    steps = faults.count(lambda: save_preset(new, scratch / "preset", overwrite=True))
    kinds = {label.split()[0] for label in steps}
    assert kinds == {"write", "weights", "assets", "rename", "mkdir"}, steps
    assert sum(label.startswith("rename") for label in steps) >= 18  # 9 entries out, 9 in
    for k in range(len(steps)):
        faults.fail(k, lambda: save_preset(new, preset, overwrite=True), steps)
        assert snapshot(area) == before, f"failure at step {k} ({steps[k]}) changed files"
    faults.fail_at = None
    save_preset(new, preset, overwrite=True)
    after = snapshot(area)
    assert after["preset/notes.txt"] == before["preset/notes.txt"]
    assert after["preset/task.weights.h5"] != before["preset/task.weights.h5"]
    assert after["preset/model.weights.h5"] != before["preset/model.weights.h5"]
    assert sorted(os.listdir(preset)) == sorted(os.listdir(scratch / "preset") + ["notes.txt"])


def test_a_failure_at_any_step_of_a_new_save_leaves_nothing(tasks, tmp_path, monkeypatch):
    _, new = tasks
    area = tmp_path / "area"
    target = area / "made" / "by" / "save"  # its parents are created, then removed
    area.mkdir()
    (area / "other.txt").write_text("x")
    before = snapshot(area)
    faults = Faults(monkeypatch, new)
    steps = faults.count(lambda: save_preset(new, tmp_path / "scratch" / "by" / "save"))
    # The whole preset is staged beside the target, then renamed into place in one step.
    assert steps[0] == "mkdir staging" and steps[-1] == "rename .keras_unitscale-staging"
    assert sum(label.startswith("rename") for label in steps) == 1
    for k in range(len(steps)):
        faults.fail(k, lambda: save_preset(new, target), steps)
        assert snapshot(area) == before, f"failure at step {k} ({steps[k]}) changed files"


def test_a_failure_in_an_existing_empty_directory_leaves_it_empty(tasks, tmp_path,
                                                                  monkeypatch):
    _, new = tasks
    (tmp_path / "preset").mkdir()
    (tmp_path / "scratch").mkdir()
    faults = Faults(monkeypatch, new)
    steps = faults.count(lambda: save_preset(new, tmp_path / "scratch"))
    for k in range(len(steps)):
        faults.fail(k, lambda: save_preset(new, tmp_path / "preset"), steps)
        assert os.listdir(tmp_path / "preset") == [], f"failure at step {k} ({steps[k]})"


def test_a_saved_preset_loads_and_its_directory_has_the_umask_mode(tasks, tmp_path):
    backbone = tasks[0].backbone
    save_preset(backbone, tmp_path / "new")
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(tmp_path / "new").st_mode & 0o777 == 0o777 & ~umask  # not mkdtemp's 0700
    assert sorted(os.listdir(tmp_path)) == ["new"]
    loaded = load_preset(type(backbone), str(tmp_path / "new"))
    for a, b in zip(loaded.weights, backbone.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))


@pytest.fixture
def existing(tasks, tmp_path):
    """A saved backbone preset, the backbone, and the snapshot of its parent directory."""
    backbone = tasks[0].backbone
    save_preset(backbone, tmp_path / "preset")
    return backbone, tmp_path / "preset", snapshot(tmp_path)


@pytest.mark.parametrize("metadata, match", [
    ({"scores": np.zeros(3)},
     r"`metadata\['scores'\]` must be a JSON value .*received numpy\.ndarray.*tolist"),
    ({"metrics": {"acc": keras.ops.ones(())}}, r"`metadata\['metrics'\]\['acc'\]`.*received"),
    ({"tags": {"a", "b"}}, r"`metadata\['tags'\]` must be a JSON value.*received set"),
    ({"by_class": {0: "negative"}}, r"`metadata\['by_class'\]` must have string keys.*int"),
    ({"weights": False}, r"`metadata` may not set \['weights'\].*include_weights="),
    ({"format_version": 2}, r"may not set \['format_version'\]"),
    ([("description", "x")], r"`metadata` must be a dict.*received list"),
])
def test_bad_metadata_is_refused_before_anything_is_written(existing, metadata, match,
                                                            monkeypatch):
    backbone, preset, before = existing
    writes = []
    monkeypatch.setattr(layout, "write_text", lambda *args: writes.append(args))
    with pytest.raises(ValueError, match=match):
        save_preset(backbone, preset, overwrite=True, metadata=metadata)
    assert writes == [] and snapshot(preset.parent) == before


def test_numpy_scalars_in_metadata_are_stored_as_python_numbers(tasks, tmp_path):
    backbone = tasks[0].backbone
    metadata = {"metrics": {"accuracy": np.float32(0.5), "steps": np.int64(7)},
                "history": [np.float64(0.25), True], "note": np.str_("ok")}
    save_preset(backbone, tmp_path / "p", metadata=metadata)
    stored = json.loads((tmp_path / "p" / "metadata.json").read_text())
    assert stored["metrics"] == {"accuracy": 0.5, "steps": 7}
    assert type(stored["metrics"]["steps"]) is int and stored["history"] == [0.25, True]
    assert stored["note"] == "ok"


def test_a_failed_serialisation_writes_nothing(existing, monkeypatch):
    backbone, preset, before = existing

    def broken(*args, **kwargs):
        raise Injected("metadata")

    monkeypatch.setattr(layout, "new_metadata", broken)
    with pytest.raises(Injected):
        save_preset(backbone, preset, overwrite=True)
    assert snapshot(preset.parent) == before


def test_overwrite_false_on_a_preset_touches_nothing(existing):
    backbone, preset, before = existing
    with pytest.raises(ValueError, match=r"is not empty .*'config.json'.*overwrite=True"):
        save_preset(backbone, preset)
    assert snapshot(preset.parent) == before


@pytest.mark.parametrize("kwargs, match", [
    ({"overwrite": "yes"}, r"`overwrite` must be True or False; received 'yes'"),
    ({"include_weights": 1}, r"`include_weights` must be True or False; received 1"),
    ({"preset_dir": ""}, r"`preset_dir` must be a directory path; received ''"),
    ({"preset_dir": 3}, r"`preset_dir` must be a directory path; received 3"),
])
def test_bad_arguments_are_named(existing, kwargs, match):
    backbone, preset, before = existing
    arguments = {"preset_dir": preset, "overwrite": True, **kwargs}
    with pytest.raises(ValueError, match=match):
        save_preset(backbone, **arguments)
    assert snapshot(preset.parent) == before
