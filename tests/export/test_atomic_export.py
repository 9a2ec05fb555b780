"""`export_task` is atomic: a failure at any step (the SavedModel's writing, its check, the
signatures file, the swap into place) leaves an existing version byte for byte as it was,
and no staging or backup directory behind."""

import os
import re

import numpy as np
import pytest
import tensorflow as tf

from file_snapshots import Injected, snapshot
from keras_unitscale.export import exporter, graph
from keras_unitscale.models.backbones import LSTMBackbone
from keras_unitscale.models.text_classifier import TextClassifier
from keras_unitscale.presets import atomic


@pytest.fixture(scope="module")
def task():
    """A tiny built classifier without a preprocessor (its export is the quickest)."""
    task = TextClassifier(LSTMBackbone(12, hidden_dim=2), num_classes=2, preprocessor=None)
    task.predict({"token_ids": np.ones((1, 4), "int32"),
                  "padding_mask": np.ones((1, 4), "int32")}, verbose=0)
    return task


class Steps:
    """Wraps the steps of an export; `fail_at = k` makes the k-th call (or, a string, the
    call of that label) write part of its output (where it writes one) and raise `Injected`.
    `fake_archive` replaces the traced SavedModel by two small files, so that every step can
    be failed in turn quickly."""

    def __init__(self, monkeypatch, fake_archive):
        self.calls, self.fail_at = [], None
        rename, make_temp_dir = atomic._rename, atomic._make_temp_dir
        write_spec, check_no_python = exporter._write_spec, graph.check_no_python

        def step(label, partial=lambda: None):
            self.calls.append(label)
            if len(self.calls) - 1 == self.fail_at or label == self.fail_at:
                partial()
                raise Injected(label)

        def fake_rename(source, destination):
            step("rename " + re.sub(r"-[0-9a-f]{8}$", "", os.path.basename(source)))
            rename(source, destination)

        def fake_make_temp_dir(parent, kind):
            step(f"mkdir {kind}")
            return make_temp_dir(parent, kind)

        def fake_write_spec(path, text):
            step("write spec", lambda: write_spec(path, text[:10]))
            write_spec(path, text)

        def fake_check(types, what):
            step(f"check {what}")
            check_no_python(types, what)

        monkeypatch.setattr(atomic, "_rename", fake_rename)
        monkeypatch.setattr(atomic, "_make_temp_dir", fake_make_temp_dir)
        monkeypatch.setattr(exporter, "_write_spec", fake_write_spec)
        monkeypatch.setattr(graph, "check_no_python", fake_check)
        if not fake_archive:
            return

        class Archive:
            def write_out(self, directory, verbose=False):
                def write(size):
                    os.makedirs(os.path.join(directory, "variables"), exist_ok=True)
                    for name in ("saved_model.pb", os.path.join("variables", "data")):
                        with open(os.path.join(directory, name), "wb") as f:
                            f.write(os.urandom(size))

                step("write SavedModel", lambda: write(10))
                write(1000)

        monkeypatch.setattr(exporter, "_archive", lambda *args: Archive())
        monkeypatch.setattr(graph, "saved_op_types", lambda directory: set())

    def run(self, k, export):
        self.calls, self.fail_at = [], k
        if k is None:
            return export()
        with pytest.raises(Injected) as raised:
            export()
        return str(raised.value)


def test_a_failure_at_any_step_leaves_the_existing_version(task, tmp_path, tmp_path_factory,
                                                           monkeypatch):
    exporter.export_task(task, tmp_path, version=1)
    (tmp_path / "2").mkdir()
    (tmp_path / "2" / "notes.txt").write_text("another version")
    before = snapshot(tmp_path)
    steps = Steps(monkeypatch, fake_archive=True)
    scratch = tmp_path_factory.mktemp("scratch")
    steps.run(None, lambda: exporter.export_task(task, scratch, version=1))
    steps.run(None, lambda: exporter.export_task(task, scratch, version=1, overwrite=True))
    counted = list(steps.calls)
    assert counted == ["mkdir staging", "write SavedModel", "check saved", "write spec",
                       "mkdir backup", "rename 1", "rename .keras_unitscale-staging"]
    for k, label in enumerate(counted):
        failed = steps.run(k, lambda: exporter.export_task(task, tmp_path, version=1,
                                                           overwrite=True))
        assert failed == label and steps.calls[:k + 1] == counted[:k + 1]
        assert snapshot(tmp_path) == before, f"failure at step {k} ({label}) changed files"


def test_a_failure_of_a_new_export_leaves_nothing(task, tmp_path, monkeypatch):
    base = tmp_path / "models" / "classifier"  # made by the export, removed on failure
    steps = Steps(monkeypatch, fake_archive=True)
    counted = ["mkdir staging", "write SavedModel", "check saved", "write spec",
               "rename .keras_unitscale-staging"]
    for k, label in enumerate(counted):
        assert steps.run(k, lambda: exporter.export_task(task, base)) == label
        assert os.listdir(tmp_path) == [], f"failure at step {k} ({label}) left files"
    assert steps.run(None, lambda: exporter.export_task(task, base)) == str(base / "1")
    assert steps.calls == counted
    assert sorted(os.listdir(base / "1")) == ["assets.extra", "saved_model.pb", "variables"]


def test_a_real_export_failing_at_the_swap_leaves_the_old_one(task, tmp_path, monkeypatch):
    first = exporter.export_task(task, tmp_path, version=1)
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(first).st_mode & 0o777 == 0o777 & ~umask  # readable by TF Serving's user
    (tmp_path / "1" / "stale.txt").write_text("from an earlier export")
    before = snapshot(tmp_path)
    steps = Steps(monkeypatch, fake_archive=False)
    last = steps.run("rename .keras_unitscale-staging",
                     lambda: exporter.export_task(task, tmp_path, version=1, overwrite=True))
    # The SavedModel was written in full, checked, and its version directory moved aside.
    assert steps.calls == ["mkdir staging", "check saved", "write spec", "mkdir backup",
                           "rename 1", last, "rename .keras_unitscale-backup"]  # and back
    assert snapshot(tmp_path) == before
    assert "serving_default" in tf.saved_model.load(first).signatures
    # A successful overwrite (replacing the whole version, stale file included) is tested in
    # test_exporter.py::test_an_existing_version_needs_overwrite.
