"""The trained built-in presets: load by name and by path, predict, and agree across backends."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_unitscale.models import CausalLM, Seq2SeqLM, Task
from keras_unitscale.models.text_classifier import TextClassifier
from keras_unitscale.presets import BUILTIN_PRESETS, read_metadata
from keras_unitscale.presets.registry import builtin_dir

TRAINED = [name for name, (_, _, trained) in BUILTIN_PRESETS.items() if trained]
REVIEWS = ["这本书写得很好，值得一读。", "质量太差了，用了两天就坏了。"]
INPUTS = {
    "TextClassifier": REVIEWS,
    "CausalLM": REVIEWS,
    "Seq2SeqLM": {"encoder_text": ["我喜欢喝茶。", "今天天气很好。"],
                  "decoder_text": ["i like tea.", "the weather is good today."]},
}
CLASSES = {"TextClassifier": TextClassifier, "CausalLM": CausalLM, "Seq2SeqLM": Seq2SeqLM}

# Runs under the other backend: loads every trained preset by name, predicts, prints JSON.
OTHER_BACKEND = """
import json, sys
import numpy as np
from keras_unitscale.models import Task
from keras_unitscale.presets import read_metadata
inputs = json.loads(sys.argv[1])
out = {}
for name in json.loads(sys.argv[2]):
    task = Task.from_preset(name)
    out[name] = np.asarray(task.predict(inputs[read_metadata(name)["task"]], verbose=0)).tolist()
print("RESULT " + json.dumps(out))
"""


def _predict(name):
    task = Task.from_preset(name)
    return task, keras.ops.convert_to_numpy(
        task.predict(INPUTS[read_metadata(name)["task"]], verbose=0)
    )


def test_every_trained_preset_is_shipped_with_weights_and_metrics():
    assert len(TRAINED) == 4
    total = 0
    for name in TRAINED:
        metadata = read_metadata(name)
        assert metadata["trained"] is True and metadata["quick"] is False, name
        assert metadata["metrics"] and metadata["training_time_s"] > 0, name
        weights = os.path.join(builtin_dir(name), "model.weights.h5")
        total += os.path.getsize(weights)
    assert total <= 40 * 2**20, f"shipped weights take {total / 2**20:.1f} MB (limit 40 MB)"


@pytest.mark.parametrize("name", TRAINED)
def test_loads_by_name_and_by_path_and_predicts(name):
    task, by_name = _predict(name)
    kind = read_metadata(name)["task"]
    assert isinstance(task, CLASSES[kind])
    assert np.all(np.isfinite(by_name))
    by_path = CLASSES[kind].from_preset(builtin_dir(name)).predict(INPUTS[kind], verbose=0)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(by_path), by_name)


def test_the_sentiment_presets_get_the_easy_reviews_right():
    for name in ("zh_sentiment_lstm", "zh_sentiment_transformer"):
        _, logits = _predict(name)
        assert logits.argmax(-1).tolist() == [1, 0], name  # positive, then negative


def test_outputs_agree_with_the_other_backend():
    other = "jax" if keras.backend.backend() == "tensorflow" else "tensorflow"
    env = dict(os.environ, KERAS_BACKEND=other, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run(
        [sys.executable, "-c", OTHER_BACKEND, json.dumps(INPUTS), json.dumps(TRAINED)],
        env=env, capture_output=True, text=True, timeout=600,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-4000:]
    theirs = json.loads(lines[-1][len("RESULT "):])
    for name in TRAINED:
        _, ours = _predict(name)
        # float32 on both sides: within 1e-5 (relative to the logits' size where they exceed 1).
        scale = max(1.0, float(np.max(np.abs(ours))))
        np.testing.assert_allclose(np.asarray(theirs[name]), ours, rtol=0, atol=1e-5 * scale,
                                   err_msg=f"{name}: {other} disagrees")
