"""The main job of `make demo`, end to end on tiny presets (the real ones take minutes)."""

import re

import keras
import numpy as np
import tensorflow as tf

from keras_unitscale import demo
from keras_unitscale.datasets import load_chinese_sentiment
from presets.tiny_models import tiny_causal_lm, tiny_classifier, tiny_seq2seq_lm


def test_demo_runs_every_step_and_the_export_matches(tmp_path, capsys):
    from keras_unitscale.presets import save_preset

    keras.utils.set_random_seed(0)
    presets = {}
    for role, make in (("classifier", tiny_classifier), ("translator", tiny_seq2seq_lm),
                       ("generator", tiny_causal_lm)):
        presets[role] = str(tmp_path / role)
        save_preset(make(), presets[role])
    accuracy, error = demo.main(epochs=1, train_size=64, presets=presets,
                                export_dir=str(tmp_path / "export"), test_size=128)
    out = capsys.readouterr().out
    for section in ("1. Scales", "2. Presets", "3. Fine-tuning", "4. Export"):
        assert section in out
    # The accuracy returned is the fine-tuned model's on the first 128 test reviews: the
    # export is that model, so its labels (raw text in, the graph segments it) recount it.
    # (A tiny random preset cannot beat the majority class; its accuracy can still be wrong.)
    _, _, (x_test, y_test) = load_chinese_sentiment()
    served = tf.saved_model.load(str(tmp_path / "export" / "1")).signatures["serving_default"](
        text=tf.constant(list(x_test[:128])))
    recounted = float(np.mean(served["label"].numpy() == y_test[:128]))
    assert abs(accuracy - recounted) < 1e-6, (accuracy, recounted)
    after = re.search(r"test accuracy on 128 reviews: [0-9.]+ before, ([0-9.]+) after", out)
    assert after and abs(float(after[1]) - recounted) < 1e-4, out
    assert error < 1e-5  # the reloaded SavedModel gives the Keras model's probabilities
    assert (tmp_path / "export" / "1" / "saved_model.pb").is_file()
    # The unit-scaled network's scales sit near one where the plain one's do not.
    rows = [line.split() for line in out.split("2. Presets")[0].splitlines()
            if line.startswith("block_")]
    assert rows and all(0.5 < float(r[2]) < 2.0 for r in rows), rows
