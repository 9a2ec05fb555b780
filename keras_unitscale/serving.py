"""Requests for a task exported to TF Serving (`task.export(path)`): REST and gRPC.

A model is described by its serving spec (`keras_unitscale.export.serving_spec`), which comes
from the task itself or from an export (`assets.extra/keras_unitscale.json` in a version
directory; a base path means its latest version). Each helper takes the model, the inputs of
one signature and its name, and:

- sends text as it is: every export segments and tokenizes raw text in its graph (jieba
  included). Only an export written before jieba ran in the graph (spec format 1, with
  `spec["jieba"]`) took pre-segmented text; for those the text is segmented here with the
  recorded dictionary, user words and HMM setting, the words joined with spaces;
- checks the inputs against the signature, naming what is wrong;
- builds TF Serving's REST body (`rest_payload`: the row format, `"instances"`, or the
  columnar `"inputs"` for `generate`, whose scalar `max_length` has no batch axis) or a gRPC
  `PredictRequest` (`grpc_request`, needs `tensorflow-serving-api`:
  `pip install "keras-unitscale[serving]"`).

See `docs/serving.md` for serving an export and sending these requests.
"""

import functools
import json
import os

import numpy as np

from keras_unitscale.export.spec import METADATA_FILE, serving_spec


def _latest_version(path):
    versions = [name for name in os.listdir(path)
                if name.isdigit() and os.path.isdir(os.path.join(path, name))]
    if not versions:
        raise ValueError(
            f"`model` {path!r} is neither an export's version directory nor a base path "
            "holding numbered versions (written by `task.export`)."
        )
    return os.path.join(path, max(versions, key=int))


def load_spec(model):
    """The serving spec of `model`: a task, an export directory (a version or its base path),
    or a spec already loaded.

    Example:
    >>> import keras_unitscale as ku
    >>> backbone = ku.models.LSTMBackbone(vocabulary_size=20, hidden_dim=4)
    >>> spec = load_spec(ku.models.TextClassifier(backbone, num_classes=2))
    >>> spec["task"], list(spec["signatures"]["token_ids"]["inputs"])
    ('TextClassifier', ['padding_mask', 'token_ids'])
    """
    if isinstance(model, dict) and "signatures" in model:
        return model
    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        if not os.path.isdir(path):
            raise ValueError(f"`model` must be an export directory; {path!r} is not one.")
        if not os.path.exists(os.path.join(path, "saved_model.pb")):
            path = _latest_version(path)
        metadata = os.path.join(path, METADATA_FILE)
        if not os.path.exists(metadata):
            raise ValueError(
                f"`model` {path!r} has no {METADATA_FILE}: it was not written by "
                "`keras_unitscale`'s `task.export`."
            )
        with open(metadata, encoding="utf-8") as f:
            return json.load(f)
    return serving_spec(model)


@functools.lru_cache(maxsize=8)
def _segmenter(hmm, user_dictionary):
    from keras_unitscale.tokenizers import JiebaTokenizer

    return JiebaTokenizer(user_dictionary=list(user_dictionary) or None, hmm=hmm)


def segment(texts, hmm=True, user_dictionary=()):
    """Segments each text with jieba and joins the words with spaces.

    What a format-1 export took (see the module), and what a `JiebaTokenizer(
    presegmented=True)` takes. Whitespace in the text becomes the token `▁`, as
    `JiebaTokenizer` writes it.

    Example:
    >>> segment(["这本书很好", "Keras 3"])
    ['这 本书 很 好', 'Keras ▁ 3']
    """
    segmenter = _segmenter(bool(hmm), tuple(user_dictionary))
    return [" ".join(words) for words in segmenter.segment(list(texts))]


def _texts(value, name):
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (str, bytes)):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError(f"`inputs['{name}']` must be a string or a non-empty list of strings; "
                         f"received {value!r:.60}.")
    texts = []
    for i, text in enumerate(value):
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        if not isinstance(text, str):
            raise ValueError(f"`inputs['{name}']` must hold strings; element {i} is "
                             f"{type(text).__name__}: {text!r:.40}.")
        texts.append(text)
    return texts


def _ids(value, name):
    array = np.asarray(value.numpy() if hasattr(value, "numpy") else value)
    if array.dtype.kind not in "iub" or array.ndim != 2:
        raise ValueError(f"`inputs['{name}']` must be a [batch, length] array of integer ids; "
                         f"received dtype {array.dtype}, shape {array.shape}.")
    return array.astype("int32").tolist()


def prepare_inputs(model, inputs, signature_name="serving_default", max_length=None):
    """The named inputs of one signature as JSON-ready lists.

    Text goes as it is (raw: the export segments it), except for a format-1 export's jieba
    inputs, which are segmented here (see the module).

    Args:
        model: a task, an export directory or a loaded spec (see `load_spec`).
        inputs: a dict of the signature's inputs, or for a signature with one batched input
            its value: a string or list of strings (text), or a 2-D int array (ids).
        signature_name: the signature to call.
        max_length: the generated length, for `generate` only.

    Example:
    >>> import keras_unitscale as ku
    >>> from keras_unitscale.preprocessors import TextClassifierPreprocessor
    >>> from keras_unitscale.tokenizers import JiebaTokenizer
    >>> preprocessor = TextClassifierPreprocessor(JiebaTokenizer.from_corpus(["很好"]), 8)
    >>> backbone = ku.models.LSTMBackbone(preprocessor.tokenizer.vocabulary_size(), 4)
    >>> task = ku.models.TextClassifier(backbone, 2, preprocessor=preprocessor)
    >>> prepare_inputs(task, ["这本书很好"])
    {'text': ['这本书很好']}
    """
    spec = load_spec(model)
    signatures = spec["signatures"]
    if signature_name not in signatures:
        raise ValueError(f"`signature_name` must be one of {sorted(signatures)}; received "
                         f"{signature_name!r}.")
    expected = signatures[signature_name]["inputs"]
    batched = [name for name in expected if expected[name]["shape"]]
    if isinstance(inputs, dict):
        inputs = dict(inputs)
        if "max_length" in inputs and max_length is None:
            max_length = inputs.pop("max_length")
        if set(inputs) != set(batched):
            raise ValueError(f"`inputs` of `{signature_name}` must have the keys {batched}; "
                             f"received {sorted(inputs)}.")
    elif len(batched) == 1:
        inputs = {batched[0]: inputs}
    else:
        raise ValueError(f"`inputs` of `{signature_name}` must be a dict with the keys "
                         f"{batched}; received {type(inputs).__name__}.")
    prepared = {}
    for name in batched:
        if expected[name]["dtype"] == "string":
            texts = _texts(inputs[name], name)
            jieba = spec.get("jieba", {}).get(name)
            prepared[name] = segment(texts, **jieba) if jieba else texts
        else:
            prepared[name] = _ids(inputs[name], name)
    if "max_length" in expected:
        if isinstance(max_length, bool) or not isinstance(max_length, (int, np.integer)) or (
                max_length < 2):
            raise ValueError(f"`max_length` must be an int >= 2 for `{signature_name}`; "
                             f"received {max_length!r}.")
        prepared["max_length"] = int(max_length)
    elif max_length is not None:
        raise ValueError(f"`max_length` is an input of `generate` only, not of "
                         f"`{signature_name}`; received {max_length!r}.")
    return prepared


def rest_payload(model, inputs, signature_name="serving_default", max_length=None):
    """The JSON body for TF Serving's REST `POST /v1/models/NAME:predict`.

    Row format (`"instances"`, one object per example) where every input has a batch axis;
    the columnar `"inputs"` for `generate`, whose `max_length` is a scalar. Arguments as
    `prepare_inputs`.

    Example:
    >>> import keras_unitscale as ku
    >>> backbone = ku.models.LSTMBackbone(vocabulary_size=20, hidden_dim=4)
    >>> task = ku.models.TextClassifier(backbone, num_classes=2)
    >>> payload = rest_payload(task, {"token_ids": [[4, 9]], "padding_mask": [[1, 1]]},
    ...                        "token_ids")
    >>> payload["signature_name"], payload["instances"]
    ('token_ids', [{'padding_mask': [1, 1], 'token_ids': [4, 9]}])
    """
    prepared = prepare_inputs(model, inputs, signature_name, max_length)
    if "max_length" in prepared:
        return {"signature_name": signature_name, "inputs": prepared}
    names = sorted(prepared)
    sizes = {len(prepared[name]) for name in names}
    if len(sizes) != 1:
        raise ValueError(f"`inputs` of `{signature_name}` must have one batch size; received "
                         f"{ {name: len(prepared[name]) for name in names} }.")
    instances = [{name: prepared[name][i] for name in names} for i in range(sizes.pop())]
    return {"signature_name": signature_name, "instances": instances}


def grpc_request(model, inputs, model_name, signature_name="serving_default", max_length=None,
                 version=None):
    """A `tensorflow_serving.apis.predict_pb2.PredictRequest` for `PredictionService/Predict`.

    Arguments as `prepare_inputs`, plus `model_name` (TF Serving's `MODEL_NAME`) and an
    optional `version` (default: the newest the server has).

    Example:
    >>> import keras_unitscale as ku
    >>> backbone = ku.models.LSTMBackbone(vocabulary_size=20, hidden_dim=4)
    >>> task = ku.models.TextClassifier(backbone, num_classes=2)
    >>> request = grpc_request(task, {"token_ids": [[4, 9]], "padding_mask": [[1, 1]]},
    ...                        "classifier", "token_ids")
    >>> request.model_spec.signature_name, sorted(request.inputs)
    ('token_ids', ['padding_mask', 'token_ids'])
    """
    try:
        from tensorflow_serving.apis import predict_pb2
    except ImportError:
        raise ImportError(
            "`grpc_request` needs the 'tensorflow-serving-api' package: "
            "pip install \"keras-unitscale[serving]\" (or tensorflow-serving-api)."
        ) from None
    import tensorflow as tf

    if not isinstance(model_name, str) or not model_name:
        raise ValueError(f"`model_name` must be the served model's name; received "
                         f"{model_name!r}.")
    spec = load_spec(model)
    prepared = prepare_inputs(spec, inputs, signature_name, max_length)
    expected = spec["signatures"][signature_name]["inputs"]
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    if version is not None:
        request.model_spec.version.value = int(version)
    for name, value in prepared.items():
        dtype = tf.string if expected[name]["dtype"] == "string" else tf.int32
        request.inputs[name].CopyFrom(tf.make_tensor_proto(value, dtype=dtype))
    return request
