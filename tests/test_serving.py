"""`keras_unitscale.serving`: TF Serving requests for a task or its export; raw text in."""

import json
import os
import shutil
import sys

import numpy as np
import pytest
import tensorflow as tf

from keras_unitscale import serving
from presets.tiny_models import ZH, tiny_causal_lm, tiny_classifier, tiny_seq2seq_lm


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A jieba classifier with a user word, exported as version 2 beside an older version 1."""
    task = tiny_classifier()
    task.preprocessor.tokenizer.set_user_dictionary(["很喜欢 20 v"])
    base = tmp_path_factory.mktemp("base")
    os.makedirs(base / "1" / "assets.extra")
    (base / "1" / "saved_model.pb").write_bytes(b"")
    (base / "1" / serving.METADATA_FILE).write_text(json.dumps({"signatures": {}}))
    task.export(base, version=2)
    return task, base


def test_specs_load_from_a_task_a_version_or_the_latest_version(exported):
    task, base = exported
    from_task = serving.load_spec(task)
    assert serving.load_spec(base) == from_task == serving.load_spec(base / "2")
    assert serving.load_spec(from_task) is from_task
    assert serving.load_spec(base / "1") == {"signatures": {}}


def test_raw_text_goes_as_it_is_and_the_export_segments_it(exported):
    task, base = exported
    texts = ["这本书很喜欢", "质量 太差了", "我很喜欢Keras 3.0！"]
    for model in (task, base):
        assert serving.prepare_inputs(model, texts) == {"text": texts}
        assert serving.prepare_inputs(model, texts[0]) == {"text": texts[:1]}
    # The export segments with the tokenizer's user word, as `predict` does.
    assert "很喜欢" in task.preprocessor.tokenizer.segment(texts[0])
    served = tf.saved_model.load(str(base / "2")).signatures["serving_default"](
        text=tf.constant(texts))
    np.testing.assert_allclose(served["logits"].numpy(), task.predict(texts, verbose=0),
                               rtol=1e-5, atol=1e-5)


def test_format_1_exports_still_get_segmented_text(exported):
    task, _ = exported
    spec = dict(serving.load_spec(task), format=1,
                jieba={"text": {"hmm": True, "user_dictionary": ["很喜欢 20 v"]}})
    texts = ["这本书很喜欢", "质量 太差了"]
    expected = [" ".join(task.preprocessor.tokenizer.segment(text)) for text in texts]
    assert "很喜欢" in expected[0].split() and "▁" in expected[1].split()
    assert serving.prepare_inputs(spec, texts) == {"text": expected}


def test_rest_payloads_row_and_columnar():
    causal = tiny_causal_lm()
    assert serving.rest_payload(causal, ["我喜欢", "你"]) == {
        "signature_name": "serving_default",
        "instances": [{"text": "我喜欢"}, {"text": "你"}],  # characters: no segmentation
    }
    assert serving.rest_payload(causal, ["我"], "generate", max_length=6) == {
        "signature_name": "generate", "inputs": {"prompt": ["我"], "max_length": 6}}
    assert serving.rest_payload(causal, {"prompt": "我", "max_length": 6}, "generate") == (
        serving.rest_payload(causal, "我", "generate", max_length=6))
    seq2seq = tiny_seq2seq_lm()
    payload = serving.rest_payload(seq2seq, {"encoder_text": [ZH[0]], "decoder_text": ["go"]})
    assert payload["instances"] == [{"decoder_text": "go", "encoder_text": ZH[0]}]
    ids = serving.rest_payload(
        seq2seq, {name: np.ones((1, 3), "int64") for name in (
            "encoder_token_ids", "encoder_padding_mask", "decoder_token_ids",
            "decoder_padding_mask")}, "token_ids")
    assert ids["instances"][0]["encoder_token_ids"] == [1, 1, 1]
    assert json.loads(json.dumps(ids)) == ids


def test_bad_requests_name_the_argument():
    causal = tiny_causal_lm()
    cases = [
        (lambda: serving.rest_payload(causal, ["x"], "predict"), "`signature_name` must be one"),
        (lambda: serving.rest_payload(causal, ["x"], "generate"), "`max_length` must be an int"),
        (lambda: serving.rest_payload(causal, ["x"], max_length=5), "`max_length` is an input"),
        (lambda: serving.rest_payload(causal, {"texts": ["x"]}), "must have the keys ['text']"),
        (lambda: serving.rest_payload(causal, [1, 2]), "`inputs['text']` must hold strings"),
        (lambda: serving.rest_payload(causal, []), "non-empty list of strings"),
        (lambda: serving.rest_payload(causal, {"token_ids": [[1.5]], "padding_mask": [[1]]},
                                      "token_ids"), "`inputs['token_ids']` must be a"),
        (lambda: serving.rest_payload(causal, {"token_ids": [[1]], "padding_mask": [[1, 1]]},
                                      "token_ids"), None),
        (lambda: serving.rest_payload(tiny_seq2seq_lm(), ["x"]), "must be a dict with the keys"),
        (lambda: serving.load_spec("/no/such/export"), "`model` must be an export directory"),
    ]
    for make, message in cases:
        if message is None:  # ragged rows pass through: the server rejects them
            make()
            continue
        with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
            make()


def test_bad_export_directories(tmp_path):
    with pytest.raises(ValueError, match="neither an export's version directory"):
        serving.load_spec(tmp_path)
    (tmp_path / "4").mkdir()
    (tmp_path / "4" / "saved_model.pb").write_bytes(b"")
    with pytest.raises(ValueError, match="not written by `keras_unitscale`"):
        serving.load_spec(tmp_path)


def test_grpc_request_carries_typed_tensors(exported):
    task, base = exported
    request = serving.grpc_request(base, ["这本书很好"], "reviews", version=2)
    assert request.model_spec.name == "reviews" and request.model_spec.version.value == 2
    assert request.model_spec.signature_name == "serving_default"
    text = tf.make_ndarray(request.inputs["text"])
    assert text.tolist() == ["这本书很好".encode()]
    generate = serving.grpc_request(tiny_causal_lm(), ["我"], "lm", "generate", max_length=6)
    assert tf.make_ndarray(generate.inputs["max_length"]).shape == ()
    assert generate.inputs["max_length"].dtype == tf.int32.as_datatype_enum
    with pytest.raises(ValueError, match="`model_name` must be"):
        serving.grpc_request(base, ["x"], "")


def test_grpc_request_without_the_serving_api(exported, monkeypatch):
    for name in ("tensorflow_serving", "tensorflow_serving.apis"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match=r"keras-unitscale\[serving\]"):
        serving.grpc_request(exported[1], ["x"], "reviews")
    shutil.rmtree(exported[1] / "1")
