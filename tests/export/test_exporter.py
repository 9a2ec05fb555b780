"""`export_task` on both backends: each task's export answers every signature, TF Serving
style, in a fresh process with TensorFlow alone, as the task does in Keras; bad arguments.

The exports and their checks share one subprocess (importing TensorFlow takes seconds), so
one test covers them all; its messages name the task and the signature.
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_unitscale import serving
from keras_unitscale.export import export_task
from keras_unitscale.models.backbones import LSTMBackbone, TransformerEncoderBackbone
from keras_unitscale.models.causal_lm import CausalLM
from keras_unitscale.models.seq2seq_backbone import Seq2SeqBackbone
from keras_unitscale.models.seq2seq_lm import Seq2SeqLM
from keras_unitscale.models.text_classifier import TextClassifier
from keras_unitscale.preprocessors import Seq2SeqLMPreprocessor, TextClassifierPreprocessor
from keras_unitscale.tokenizers import CharacterTokenizer, JiebaTokenizer, train_word_piece
from presets.tiny_models import (
    EN,
    ZH,
    causal_lm_preprocessor,
    tiny_causal_lm,
    tiny_classifier,
)

CHECKER = os.path.join(os.path.dirname(__file__), "load_without_keras.py")
MAX_LENGTH = 7


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _word_piece_classifier():
    preprocessor = TextClassifierPreprocessor(train_word_piece(EN * 4, 40), sequence_length=8)
    backbone = TransformerEncoderBackbone(
        preprocessor.tokenizer.vocabulary_size(), num_layers=1, num_heads=2, hidden_dim=8,
        intermediate_dim=16, max_sequence_length=8)
    return TextClassifier(backbone, num_classes=3, preprocessor=preprocessor)


def _lstm_causal_lm():
    preprocessor = causal_lm_preprocessor()
    backbone = LSTMBackbone(preprocessor.tokenizer.vocabulary_size(), hidden_dim=8,
                            bidirectional=False)
    return CausalLM(backbone, preprocessor)


def _translator():
    """The `zh_en_translator` preset's kind: characters in, WordPiece out (untied readout)."""
    decoder_tokenizer = train_word_piece(EN * 4, 40)
    preprocessor = Seq2SeqLMPreprocessor(CharacterTokenizer.from_corpus(ZH), decoder_tokenizer,
                                         8, 8)
    backbone = Seq2SeqBackbone(
        preprocessor.tokenizer.vocabulary_size(), num_layers=1, num_heads=2, hidden_dim=8,
        intermediate_dim=16, max_sequence_length=8,
        decoder_vocabulary_size=decoder_tokenizer.vocabulary_size())
    return Seq2SeqLM(backbone, preprocessor, tie_weights=False)


def _int8_lstm_causal_lm():
    """An LSTM LM after `quantize("int8")`: its export serves the quantised weights. It is the
    one LSTM LM here: the float one's export runs the same graph with its kernels unquantised
    (its cache, its sampler, its signatures), so a second export would check nothing new."""
    task = _lstm_causal_lm()
    task(keras.utils.unpack_x_y_sample_weight(task.preprocessor(ZH))[0])  # builds it
    task.quantize("int8")
    return task


TASKS = {
    "jieba_lstm_classifier": (tiny_classifier, ZH),
    "word_piece_transformer_classifier": (_word_piece_classifier, EN),
    "transformer_causal_lm": (tiny_causal_lm, ZH),
    "int8_lstm_causal_lm": (_int8_lstm_causal_lm, ZH),
    "seq2seq_lm": (_translator, {"encoder_text": ZH, "decoder_text": EN}),
}


def _cases(task, texts):
    """`[(signature, payload, expected outputs)]`: the Keras task's own answers."""
    features = task.preprocessor(texts)
    features = {k: _np(v) for k, v in keras.utils.unpack_x_y_sample_weight(features)[0].items()}

    def model_outputs(logits):
        logits = _np(logits)
        if not isinstance(task, TextClassifier):
            return {"logits": logits}
        shifted = np.exp(logits - logits.max(-1, keepdims=True))
        return {"logits": logits, "probabilities": shifted / shifted.sum(-1, keepdims=True),
                "label": logits.argmax(-1)}

    one = {k: v[:1] for k, v in texts.items()} if isinstance(texts, dict) else texts[:1]
    shorter = {k: v[:, :-2] for k, v in features.items()}
    predicted = model_outputs(task.predict(texts, verbose=0))
    cases = [
        ("serving_default", serving.rest_payload(task, texts), predicted),
        ("serving_default", serving.rest_payload(task, one),  # a batch of one
         {name: value[:1] for name, value in predicted.items()}),
        ("token_ids", serving.rest_payload(task, features, "token_ids"),
         model_outputs(task(features, training=False))),
        ("token_ids", serving.rest_payload(task, shorter, "token_ids"),
         model_outputs(task(shorter, training=False))),
    ]
    if isinstance(task, TextClassifier):
        return cases
    prompts = texts["encoder_text"] if isinstance(texts, dict) else [t[:2] for t in texts]
    if isinstance(texts, dict):
        packed = task.preprocessor.generate_preprocess(prompts, decoder_sequence_length=MAX_LENGTH)
    else:
        packed = task.preprocessor.generate_preprocess(prompts, sequence_length=MAX_LENGTH)
    packed = {k: _np(v).astype("int32") for k, v in packed.items()}
    ids = task.generate(packed)
    ids_key = "decoder_token_ids" if "decoder_token_ids" in ids else "token_ids"
    mask_key = ids_key.replace("token_ids", "padding_mask")
    cases += [
        ("generate", serving.rest_payload(task, prompts, "generate", max_length=MAX_LENGTH),
         {"text": task.generate(prompts, max_length=MAX_LENGTH),
          "token_ids": ids[ids_key], "padding_mask": ids[mask_key]}),
        ("generate_token_ids", serving.rest_payload(task, packed, "generate_token_ids"), ids),
    ]
    return cases


def _check_outputs(where, outputs, expected):
    assert sorted(outputs) == sorted(expected), where
    for name, value in expected.items():
        if isinstance(value, list):  # text
            assert outputs[name] == value, (where, name)
        elif np.asarray(value).dtype.kind == "f":
            np.testing.assert_allclose(outputs[name], value, rtol=1e-5, atol=1e-5,
                                       err_msg=f"{where}: {name}")
        else:
            np.testing.assert_array_equal(outputs[name], np.asarray(value).astype("int32"),
                                          err_msg=f"{where}: {name}")


def _check_cli(where, printout, payloads):
    for signature in {payload["signature_name"] for payload in payloads}:
        assert f'SignatureDef key: "{signature}"' in printout, (where, signature)
    assert "dtype: DT_INT32\n      shape: (-1, -1)" in printout, where
    if "generate" in printout:
        assert "inputs['max_length'] tensor_info:\n      dtype: DT_INT32\n      shape: ()" \
            in printout, where
    assert "dtype: DT_STRING\n      shape: (-1)" in printout, where


def test_every_export_serves_without_keras(tmp_path):
    jobs, expectations = [], []
    for name, (build, texts) in TASKS.items():
        keras.utils.set_random_seed(0)
        task = build()
        directory = task.export(tmp_path / name)
        assert directory == os.path.join(tmp_path / name, "1")
        cases = _cases(task, texts)
        jobs.append({"directory": directory, "payloads": [payload for _, payload, _ in cases]})
        expectations.append((name, cases))
    (tmp_path / "jobs.json").write_text(json.dumps(jobs, ensure_ascii=False), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-I", CHECKER, str(tmp_path / "jobs.json"),
         str(tmp_path / "results.json")],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))

    for (name, cases), checked in zip(expectations, results, strict=True):
        assert checked["imported"] == [], checked["imported"]
        assert checked["unregistered"] == [] and checked["outside_core_and_tf_text"] == [], (
            name, checked["unregistered"], checked["outside_core_and_tf_text"])
        assert not {"PyFunc", "EagerPyFunc", "PyFuncStateless"} & set(checked["ops"]), name
        # Registered by TensorFlow itself but not in `tf.raw_ops`: XLA's ops (XlaCallModule
        # from jax2tf, XlaDynamicUpdateSlice from Keras' `slice_update` on TensorFlow).
        assert all(op.startswith("Xla") for op in checked["not_in_raw_ops"]), (
            name, checked["not_in_raw_ops"])
        if keras.backend.backend() == "jax":
            assert "XlaCallModule" in checked["ops"], name
        # Core TensorFlow ops only: jieba's segmentation and WordPiece run in-graph without
        # TF Text (SentencePiece, in no task here, is the one tokenizer that still needs it).
        assert not checked["tf_text_ops"], (name, checked["tf_text_ops"])
        _check_cli(name, checked["cli"], [payload for _, payload, _ in cases])
        for i, ((signature, _, expected), outputs) in enumerate(zip(cases, checked["outputs"], strict=True)):
            _check_outputs(f"{name}, {signature} (request {i})", outputs, expected)


@pytest.fixture(scope="module")
def causal_lm_export(tmp_path_factory):
    keras.utils.set_random_seed(0)
    task = tiny_causal_lm()
    return task, task.export(tmp_path_factory.mktemp("export"))


def test_generate_checks_max_length_in_the_graph(causal_lm_export):
    _, directory = causal_lm_export
    generate = tf.saved_model.load(directory).signatures["generate"]
    with pytest.raises(tf.errors.InvalidArgumentError, match="at most 8"):
        generate(prompt=tf.constant(["我"]), max_length=tf.constant(9))
    with pytest.raises(tf.errors.InvalidArgumentError, match="longer than the longest prompt"):
        generate(prompt=tf.constant(["我喜欢猫"]), max_length=tf.constant(5))


def test_an_existing_version_needs_overwrite(tmp_path):
    task = tiny_classifier()
    first = export_task(task, tmp_path, version=2)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export_task(task, tmp_path, version=2)
    (tmp_path / "2" / "stale.txt").write_text("old")
    assert export_task(task, tmp_path, version=2, overwrite=True) == first
    assert sorted(os.listdir(tmp_path)) == ["2"]  # no staging directory left behind
    assert not os.path.exists(tmp_path / "2" / "stale.txt")
    assert "token_ids" in tf.saved_model.load(first).signatures


def test_unbuilt_tasks_and_bad_arguments_are_named(causal_lm_export, tmp_path, monkeypatch):
    task, _ = causal_lm_export
    for version in (0, "1", True, 1.5):
        with pytest.raises(ValueError, match="`version` must be a positive int"):
            export_task(task, tmp_path, version=version)
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="`path` must be a directory"):
        export_task(task, tmp_path / "file")
    with pytest.raises(ValueError, match="`task` must be a keras_unitscale TextClassifier"):
        export_task(keras.Sequential([keras.layers.Dense(2)]), tmp_path)

    without_vocabulary = TextClassifierPreprocessor(JiebaTokenizer(), sequence_length=4)
    classifier = TextClassifier(LSTMBackbone(10, hidden_dim=4), 2, without_vocabulary)
    with pytest.raises(ValueError, match="`task.preprocessor` cannot run"):
        classifier.export(tmp_path)
    monkeypatch.setattr(classifier, "built", False)
    with pytest.raises(ValueError, match="`task` .* has not been built"):
        classifier.export(tmp_path)
    assert os.listdir(tmp_path) == ["file"]  # nothing written on failure



def test_a_task_without_a_preprocessor_under_a_mixed_policy_serves_as_it_predicts(tmp_path):
    """A causal LM built under `mixed_bfloat16` (float32 variables, bfloat16 compute) and
    exported without a preprocessor: the export has the id signatures only
    (`serving_default` is `token_ids`); their float32 logits equal `predict`'s to float32
    rounding and differ from the same weights computed in float32 by a bfloat16 rounding (the
    export did not fall back to float32); its greedy decoding equals `generate(...,
    stop_token_ids=None)` and runs to the full length (no end token without a tokenizer)."""
    keras.config.set_dtype_policy("mixed_bfloat16")
    task = tiny_causal_lm()
    bare = CausalLM(task.backbone, preprocessor=None)
    assert bare.backbone.dtype_policy.name == "mixed_bfloat16"
    packed = {"token_ids": np.array([[1, 5, 6, 0, 0, 0], [1, 7, 0, 0, 0, 0]], "int32"),
              "padding_mask": np.array([[1, 1, 1, 0, 0, 0], [1, 1, 0, 0, 0, 0]], "int32")}
    predicted = _np(bare.predict(packed, verbose=0)).astype("float32")
    loaded = tf.saved_model.load(export_task(bare, tmp_path))
    assert sorted(loaded.signatures) == ["generate_token_ids", "serving_default", "token_ids"]
    request = {name: tf.constant(value) for name, value in packed.items()}
    for name in ("serving_default", "token_ids"):
        outputs = loaded.signatures[name](**request)
        assert sorted(outputs) == ["logits"] and outputs["logits"].dtype == tf.float32, name
        np.testing.assert_allclose(outputs["logits"].numpy(), predicted, rtol=1e-5, atol=1e-5,
                                   err_msg=name)
    generated = loaded.signatures["generate_token_ids"](**request)
    expected = bare.generate(packed, stop_token_ids=None)
    assert sorted(generated) == sorted(expected) == ["padding_mask", "token_ids"]
    for name, value in expected.items():
        np.testing.assert_array_equal(generated[name].numpy(), value, err_msg=name)
    assert expected["padding_mask"].all()  # every position generated: nothing stopped it
    np.testing.assert_array_equal(expected["token_ids"][:, :2], packed["token_ids"][:, :2])

    keras.config.set_dtype_policy("float32")
    in_float32 = CausalLM(tiny_causal_lm().backbone, preprocessor=None)
    in_float32.set_weights(bare.get_weights())  # float32 variables either way
    in_float32 = _np(in_float32(packed, training=False))
    difference = np.abs(in_float32 - predicted).max() / np.abs(in_float32).max()
    assert 1e-4 < difference < 0.05, difference
