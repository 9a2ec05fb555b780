"""`import keras_unitscale` on JAX loads neither TensorFlow nor keras-hub nor tensorflow-text;
building, compiling and calling models does not either; the text and export paths load them on
first use. One child process with `KERAS_BACKEND=jax` (whatever backend runs the suite), so
the module runs in the JAX pass of `make test` only."""

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.backend_independent

HEAVY = ("tensorflow", "keras_hub", "tensorflow_text")

_CHILD = r"""
import json, sys
import numpy as np

HEAVY = ("tensorflow", "keras_hub", "tensorflow_text")
stages = {}


def record(stage):
    stages[stage] = [name for name in HEAVY if name in sys.modules]


import keras_unitscale as ku
from keras_unitscale.models.backbones import LSTMBackbone

record("import")
assert ku.list_presets(), "no presets listed"
record("list_presets")

x = {"token_ids": np.array([[4, 7, 9, 0], [3, 5, 0, 0]], "int32"),
     "padding_mask": np.array([[1, 1, 1, 0], [1, 1, 0, 0]], "int32")}
small = dict(vocabulary_size=50, num_layers=1, num_heads=2, hidden_dim=8, intermediate_dim=16,
             max_sequence_length=8)
encoder = ku.models.TransformerEncoderBackbone(**small)
decoder = ku.models.TransformerDecoderBackbone(**small)
lstm = LSTMBackbone(vocabulary_size=50, hidden_dim=8, bidirectional=False)
shapes = [tuple(backbone(x).shape) for backbone in (encoder, decoder, lstm)]
assert shapes == [(2, 4, 8)] * 3, shapes
record("backbones")

classifier = ku.models.TextClassifier(encoder, num_classes=3)
assert tuple(classifier(x).shape) == (2, 3)
record("text_classifier")

lm = ku.models.CausalLM(decoder)
lm.compile(sampler="top_k")
assert tuple(lm(x).shape) == (2, 4, 50)
record("causal_lm")

hidden, cache = decoder.call_with_cache(x["token_ids"][:, :2], decoder.empty_cache(2, 4), 0)
assert tuple(hidden.shape) == (2, 2, 8)
record("decoder_cache")

# First use of the lazy parts: they import keras-hub and TensorFlow now.
lazy = {}
for name in ("tokenizers", "preprocessors", "datasets", "export", "serving"):
    lazy[name] = getattr(ku, name).__name__
lazy["CharacterTokenizer"] = ku.tokenizers.CharacterTokenizer.__name__
lazy["CausalLMPreprocessor"] = ku.preprocessors.CausalLMPreprocessor.__name__
lazy["sampler"] = type(lm.sampler).__name__
from keras_unitscale.models.generation import SAMPLERS
lazy["SAMPLERS"] = sorted(SAMPLERS)
out = lm.generate(x, max_length=4, stop_token_ids=None)
lazy["generated"] = list(out["token_ids"].shape)
try:
    ku.no_such_module
except AttributeError:
    lazy["unknown"] = "AttributeError"
record("lazy")
print("RESULT " + json.dumps({"stages": stages, "lazy": lazy}))
"""


@pytest.fixture(scope="module")
def child():
    env = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    line = [row for row in result.stdout.splitlines() if row.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def test_import_loads_neither_tensorflow_nor_keras_hub(child):
    assert child["stages"]["import"] == []
    assert child["stages"]["list_presets"] == []


@pytest.mark.parametrize(
    "stage", ["backbones", "text_classifier", "causal_lm", "decoder_cache"]
)
def test_building_compiling_and_calling_models_loads_neither(child, stage):
    assert child["stages"][stage] == [], stage


def test_the_lazy_parts_resolve_on_first_use(child):
    lazy = child["lazy"]
    for name in ("tokenizers", "preprocessors", "datasets", "export", "serving"):
        assert lazy[name] == f"keras_unitscale.{name}"
    assert lazy["CharacterTokenizer"] == "CharacterTokenizer"
    assert lazy["CausalLMPreprocessor"] == "CausalLMPreprocessor"
    assert lazy["sampler"] == "TopKSampler"
    assert lazy["SAMPLERS"] == ["greedy", "random", "top_k", "top_p"]
    assert lazy["generated"] == [2, 4]
    assert lazy["unknown"] == "AttributeError"
    # The text path is what loads them (the check above is not vacuous).
    assert set(child["stages"]["lazy"]) >= {"tensorflow", "keras_hub"}
