"""What an export serves: its signatures, their inputs and outputs.

`serving_spec(task)` describes the SavedModel that `export_task` writes for `task`, as plain
JSON data. The exporter builds its `tf.TensorSpec`s from it, writes it beside the model
(`assets.extra/keras_unitscale.json`), and `keras_unitscale.serving` reads it to build
requests for a task or for an export without rebuilding the model.

Signatures (a `-1` in a shape is any size; the first axis is always the batch):

- `serving_default`: raw text in (`text`, or `encoder_text` and `decoder_text` for a
  `Seq2SeqLM`), preprocessing in the graph, jieba's segmentation included. Inputs named in
  `spec["presegmented"]` belong to a `JiebaTokenizer(presegmented=True)` and take words
  separated by spaces, as that tokenizer does in Keras. Without a preprocessor it is the
  `token_ids` signature.
- `token_ids`: the model's own inputs (int32), for clients that tokenize themselves.
- `generate` (language models with a preprocessor): greedy decoding of `prompt` (or
  `encoder_text`) to a scalar `max_length`; `generate_token_ids`: the same from packed ids.

Outputs: `logits`, `probabilities` and `label` for a `TextClassifier`; `logits` for the
language models; `token_ids`, `padding_mask` and `text` for `generate`.

Format 1 (exports written before jieba ran in the graph) had `spec["jieba"]`: the inputs
whose text the client segmented; `keras_unitscale.serving` still does that for them.
"""

import os

# Where an export keeps its spec: TF Serving ignores `assets.extra/`, made for such files.
METADATA_FILE = os.path.join("assets.extra", "keras_unitscale.json")

# A backbone without a position table (an LSTM) has no length limit of its own; generation
# from text packs prompts to this many tokens before cutting them to `max_length`.
UNBOUNDED_LENGTH = 2048

CLASSIFIER_OUTPUTS = ("logits", "probabilities", "label")
LM_OUTPUTS = ("logits",)


def _ids(*names):
    return {name: {"dtype": "int32", "shape": [-1, -1]} for name in names}


def _text(*names):
    return {name: {"dtype": "string", "shape": [-1]} for name in names}


def task_kind(task):
    """`"classifier"`, `"causal_lm"` or `"seq2seq_lm"`; `ValueError` for other models.

    Example:
    >>> import keras_unitscale as ku
    >>> task_kind(ku.models.TextClassifier(ku.models.LSTMBackbone(20, hidden_dim=4), 2))
    'classifier'
    """
    from keras_unitscale.models.causal_lm import CausalLM
    from keras_unitscale.models.seq2seq_lm import Seq2SeqLM
    from keras_unitscale.models.text_classifier import TextClassifier

    for cls, kind in ((TextClassifier, "classifier"), (CausalLM, "causal_lm"),
                      (Seq2SeqLM, "seq2seq_lm")):
        if isinstance(task, cls):
            return kind
    raise ValueError(
        "`task` must be a keras_unitscale TextClassifier, CausalLM or Seq2SeqLM; received "
        f"{type(task).__name__}: {task!r:.60}."
    )


def text_tokenizers(task):
    """`{text input name: tokenizer}` of the string signatures (empty without a preprocessor).

    Example:
    >>> import keras_unitscale as ku
    >>> text_tokenizers(ku.models.TextClassifier(ku.models.LSTMBackbone(20, 4), 2))
    {}
    """
    preprocessor = task.preprocessor
    if preprocessor is None:
        return {}
    kind = task_kind(task)
    if kind == "seq2seq_lm":
        return {"encoder_text": preprocessor.tokenizer,
                "decoder_text": preprocessor.decoder_tokenizer}
    if kind == "causal_lm":
        return {"text": preprocessor.tokenizer, "prompt": preprocessor.tokenizer}
    return {"text": preprocessor.tokenizer}


def presegmented_inputs(task):
    """The text inputs whose tokenizer takes words separated by spaces (a
    `JiebaTokenizer(presegmented=True)`), sorted; every other text input takes raw text.

    Example:
    >>> import keras_unitscale as ku
    >>> from keras_unitscale.preprocessors import TextClassifierPreprocessor
    >>> from keras_unitscale.tokenizers import JiebaTokenizer
    >>> tokenizer = JiebaTokenizer.from_corpus(["很 好"], presegmented=True)
    >>> preprocessor = TextClassifierPreprocessor(tokenizer, 8)
    >>> backbone = ku.models.LSTMBackbone(preprocessor.tokenizer.vocabulary_size(), 4)
    >>> presegmented_inputs(ku.models.TextClassifier(backbone, 2, preprocessor=preprocessor))
    ['text']
    """
    return sorted(name for name, tokenizer in text_tokenizers(task).items()
                  if getattr(tokenizer, "presegmented", False))


def sequence_limit(task):
    """The longest sequence the backbone takes (its position table), or `None`.

    Example:
    >>> import keras_unitscale as ku
    >>> print(sequence_limit(ku.models.TextClassifier(ku.models.LSTMBackbone(20, 4), 2)))
    None
    """
    return getattr(task.backbone, "max_sequence_length", None)


def serving_spec(task):
    """The signatures `export_task(task, ...)` writes, as JSON data (see the module).

    Example:
    >>> import keras_unitscale as ku
    >>> from keras_unitscale.export import serving_spec
    >>> backbone = ku.models.LSTMBackbone(vocabulary_size=20, hidden_dim=4)
    >>> spec = serving_spec(ku.models.TextClassifier(backbone, num_classes=2))
    >>> sorted(spec["signatures"])
    ['serving_default', 'token_ids']
    >>> spec["signatures"]["token_ids"]["outputs"]
    ['logits', 'probabilities', 'label']
    """
    kind = task_kind(task)
    model_inputs = sorted(task.backbone.input)
    outputs = list(CLASSIFIER_OUTPUTS if kind == "classifier" else LM_OUTPUTS)
    signatures = {"token_ids": {"inputs": _ids(*model_inputs), "outputs": outputs}}
    has_text = task.preprocessor is not None
    if has_text:
        text = ("encoder_text", "decoder_text") if kind == "seq2seq_lm" else ("text",)
        signatures["serving_default"] = {"inputs": _text(*text), "outputs": outputs}
    else:
        signatures["serving_default"] = signatures["token_ids"]
    if kind != "classifier":
        generated = ["decoder_token_ids", "decoder_padding_mask"] if kind == "seq2seq_lm" else [
            "token_ids", "padding_mask"]
        signatures["generate_token_ids"] = {"inputs": _ids(*model_inputs), "outputs": generated}
        if has_text:
            prompt = "encoder_text" if kind == "seq2seq_lm" else "prompt"
            inputs = _text(prompt)
            inputs["max_length"] = {"dtype": "int32", "shape": []}
            signatures["generate"] = {
                "inputs": inputs, "outputs": ["token_ids", "padding_mask", "text"],
            }
    return {
        "format": 2,
        "task": type(task).__name__,
        "signatures": signatures,
        "presegmented": presegmented_inputs(task),
        "max_sequence_length": sequence_limit(task),
    }
