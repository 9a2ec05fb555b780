"""WordPiece's graph loads and serves with core TensorFlow alone: no TF Text, Keras or ours.

One child process (`python -I`) refuses to import keras, keras_hub, keras_unitscale, jax,
jaxlib, jieba, tensorflow_text and tf_keras, and loads no op library: every op type of the
graph must be registered by TensorFlow itself. It loads the tokenizer's SavedModel and calls
its signatures; the answers must be the tokenizer's eager (pure Python) ones, tokenizing and
detokenizing, on hard texts.

Not here: SentencePiece (its TensorFlow path still runs TF Text's SentencepieceOp). The task
exports (jieba, character and WordPiece tokenizers; a WordPiece classifier and a
characters-to-WordPiece translator among them) are served in test_exporter.py, which asserts
that their graphs hold no op outside core TensorFlow and loads them with keras,
keras_unitscale, jax and jieba refused.
"""

import json
import os
import subprocess
import sys

import keras
import pytest
import tensorflow as tf

from keras_unitscale.export.graph import tf_trackables
from keras_unitscale.tokenizers import train_word_piece

EN = ["This book is good.", "Bad quality!", "I like cats, don't you?", "Hello (again)"]
# Unknown words, mixed case, accents, CJK, punctuation runs, a word over 100 bytes.
HARD = ["Ünïcode café, NAÏVE façade", "“quotes” and ‘more’…", "中文 and English",
        "x" * 120, "", "  spaces\tand\nlines  "]

CHILD = r'''
import importlib.abc, importlib.machinery, json, sys

BLOCKED = ("keras", "keras_hub", "keras_unitscale", "jax", "jaxlib", "jieba",
           "tensorflow_text", "tf_keras")


class Refused(importlib.abc.Loader):
    def create_module(self, spec):
        raise ImportError(f"{spec.name} is blocked: exports must need TensorFlow alone")

    def exec_module(self, module):
        raise ImportError(module.__name__)


class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            return importlib.machinery.ModuleSpec(name, Refused())
        return None


sys.meta_path.insert(0, Blocker())
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow.python.framework import op_def_registry


def op_types(directory):
    proto = saved_model_pb2.SavedModel()
    with open(directory + "/saved_model.pb", "rb") as f:
        proto.ParseFromString(f.read())
    types, functions = set(), set()
    for graph in proto.meta_graphs:
        types.update(node.op for node in graph.graph_def.node)
        for function in graph.graph_def.library.function:
            functions.add(function.signature.name)
            types.update(node.op for node in function.node_def)
    return types - functions


def plain(value):
    value = value.numpy()
    if value.dtype == object:
        return [text.decode("utf-8") for text in value.reshape(-1).tolist()]
    return value.tolist()


with open(sys.argv[1], encoding="utf-8") as f:
    jobs = json.load(f)
results = []
for job in jobs:
    types = op_types(job["directory"])
    loaded = tf.saved_model.load(job["directory"])
    outputs = {}
    for name, inputs in job["calls"].items():
        signature = loaded.signatures[name]
        specs = signature.structured_input_signature[1]
        # Every string input gets the texts, an integer scalar (`max_length`) its value.
        arguments = {k: tf.constant(inputs[k] if k in inputs else
                                    inputs["texts" if spec.dtype == tf.string else "scalar"],
                                    spec.dtype) for k, spec in specs.items()}
        answer = signature(**arguments)
        outputs[name] = {k: plain(v) for k, v in answer.items()}
    results.append({"unregistered": sorted(op for op in types
                                           if op_def_registry.get(op) is None),
                    "ops": sorted(types), "outputs": outputs})
imported = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
with open(sys.argv[2], "w", encoding="utf-8") as f:
    json.dump({"jobs": results, "imported": imported}, f, ensure_ascii=False)
'''


def _tokenizer_module(tokenizer, directory):
    """The tokenizer alone, as a SavedModel: `tokenize` (padded ids, lengths), `detokenize`."""
    module = tf.Module()
    module.resources = tf_trackables(tokenizer)  # As an export tracks them (any backend).

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def tokenize(text):
        ids = tokenizer.tokenize(text)
        return {"ids": ids.to_tensor(-1), "lengths": ids.row_lengths()}

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32),
                                  tf.TensorSpec([None], tf.int64)])
    def detokenize(ids, lengths):
        return {"text": tokenizer.detokenize(tf.RaggedTensor.from_tensor(ids, lengths))}

    tf.saved_model.save(module, directory,
                        signatures={"tokenize": tokenize, "detokenize": detokenize})
    return directory


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The tokenizer's export, the child's answers, and what the tokenizer answers eagerly."""
    tmp = tmp_path_factory.mktemp("core_tf_only")
    keras.utils.set_random_seed(0)
    tokenizer = train_word_piece(EN * 4, 60)
    texts = EN + HARD
    eager_ids = tokenizer.tokenize(texts)
    lengths = [len(row) for row in eager_ids]
    padded = [row + [-1] * (max(lengths) - len(row)) for row in eager_ids]
    detokenize_ids = [row + [0] * (max(lengths) - len(row)) for row in eager_ids]
    jobs = [{"directory": _tokenizer_module(tokenizer, str(tmp / "word_piece")),
             "calls": {"tokenize": {"text": texts},
                       "detokenize": {"ids": detokenize_ids, "lengths": lengths}}}]
    expected = [{"tokenize": {"ids": padded, "lengths": lengths},
                 "detokenize": {"text": tokenizer.detokenize(eager_ids)}}]

    (tmp / "jobs.json").write_text(json.dumps(jobs, ensure_ascii=False), encoding="utf-8")
    (tmp / "child.py").write_text(CHILD, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-I", str(tmp / "child.py"), str(tmp / "jobs.json"),
         str(tmp / "results.json")],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    answers = json.loads((tmp / "results.json").read_text(encoding="utf-8"))
    return answers, expected


def test_only_core_tensorflow_is_loaded(served):
    answers, _ = served
    assert answers["imported"] == []
    assert len(answers["jobs"]) == 1
    for job in answers["jobs"]:
        assert job["unregistered"] == []
        assert not {"PyFunc", "EagerPyFunc", "PyFuncStateless"} & set(job["ops"])
    # The tokenizer's graph does its own work: lookups, regexes and a loop, no TF Text op.
    word_piece_ops = set(answers["jobs"][0]["ops"])
    assert {"LookupTableFindV2", "StaticRegexReplace", "StringSplitV2"} <= word_piece_ops
    assert not {op for op in word_piece_ops if "Wordpiece" in op or "RegexSplit" in op}


def test_word_piece_matches_eager(served):
    answers, expected = served
    outputs = answers["jobs"][0]["outputs"]
    assert outputs["tokenize"] == expected[0]["tokenize"]
    assert outputs["detokenize"] == expected[0]["detokenize"]
    # Some of the texts have unknown and split words: not a trivial vocabulary.
    assert 1 in sum(expected[0]["tokenize"]["ids"], [])

