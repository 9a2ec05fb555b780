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
    # The comparison is symmetric, so each pass of `make test` takes half of the presets (the
    # TensorFlow pass the even ones, the JAX pass the odd ones): every trained preset is
    # compared across the two backends once, at half the cost per pass.
    backend = keras.backend.backend()
    other = "jax" if backend == "tensorflow" else "tensorflow"
    names = TRAINED[::2] if backend == "tensorflow" else TRAINED[1::2]
    assert names
    env = dict(os.environ, KERAS_BACKEND=other, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run(
        [sys.executable, "-c", OTHER_BACKEND, json.dumps(INPUTS), json.dumps(names)],
        env=env, capture_output=True, text=True, timeout=600,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-4000:]
    theirs = json.loads(lines[-1][len("RESULT "):])
    assert sorted(theirs) == sorted(names)
    for name in names:
        _, ours = _predict(name)
        # float32 on both sides: within 1e-5 (relative to the logits' size where they exceed 1).
        scale = max(1.0, float(np.max(np.abs(ours))))
        np.testing.assert_allclose(np.asarray(theirs[name]), ours, rtol=0, atol=1e-5 * scale,
                                   err_msg=f"{name}: {other} disagrees")


def _token_nll(task, data):
    """`(mean negative log-likelihood in nats of the target tokens the preprocessor weights,
    size of the output vocabulary)`."""
    x, y, weights = task.preprocessor(data)
    z = keras.ops.convert_to_numpy(task(x)).astype("float64")
    z = z - z.max(-1, keepdims=True)
    log_probs = z - np.log(np.exp(z).sum(-1, keepdims=True))
    y = keras.ops.convert_to_numpy(y)
    keep = keras.ops.convert_to_numpy(weights).astype(bool)
    nll = -np.take_along_axis(log_probs, y[..., None], -1)[..., 0][keep].mean()
    return float(nll), z.shape[-1]


@pytest.mark.parametrize("name", ["zh_reviews_gpt", "zh_en_translator"])
def test_generative_presets_model_held_out_text_far_better_than_random_weights(name):
    """Eight held-out items (the test split of the seeded split each preset was trained on,
    per its metadata): the trained model's per-token perplexity is below 1/15 of the output
    vocabulary (the translator measured 26 of 623), while the same model with its weights
    re-drawn N(0, 1), as at initialisation, is near uniform (NLL within 0.5 nats of
    log(vocabulary)) and at least 2.5 nats per token (a factor 12 in perplexity) worse."""
    from keras_unitscale.datasets import load_chinese_sentiment, load_zh_en_pairs

    task = Task.from_preset(name)
    if name == "zh_reviews_gpt":
        data = list(load_chinese_sentiment(seed=0)[2][0][:8])
    else:
        zh, en = load_zh_en_pairs(seed=0)[2]
        data = {"encoder_text": list(zh[:8]), "decoder_text": list(en[:8])}
    trained, vocab = _token_nll(task, data)
    assert np.exp(trained) < vocab / 15, f"{name}: perplexity {np.exp(trained):.1f}, vocab {vocab}"
    rng = np.random.default_rng(0)
    for w in task.trainable_weights:
        w.assign(rng.standard_normal(tuple(w.shape)).astype("float32"))
    random, _ = _token_nll(task, data)
    assert abs(random - np.log(vocab)) < 0.5, (random, np.log(vocab))
    assert random - trained > 2.5, (name, trained, random)
