"""What an export serves: its signatures, their inputs and outputs.

`serving_spec(task)` describes the SavedModel that `export_task` writes for `task`, as plain
JSON data. The exporter builds its `tf.TensorSpec`s from it, writes it beside the model
(`assets.extra/keras_unitscale.json`), and `keras_unitscale.serving` reads it to build
requests for a task or for an export without rebuilding the model.

Signatures (a `-1` in a shape is any size; the first axis is always the batch):

- `serving_default`: raw text in (the task's declared `text_inputs`: `text`, or
  `encoder_text` and `decoder_text` for a `Seq2SeqLM`), preprocessing in the graph, jieba's
  segmentation included. Inputs named in `spec["presegmented"]` belong to a
  `JiebaTokenizer(presegmented=True)` and take words separated by spaces, as that tokenizer
  does in Keras. Without a preprocessor it is the `token_ids` signature.
- `token_ids`: the model's own inputs (int32), for clients that tokenize themselves.
- `generate` (tasks that declare a `prompt_input`, with a preprocessor): greedy decoding of
  `prompt` (or `encoder_text`) to a scalar `max_length`; `generate_token_ids`: the same from
  packed ids.

Outputs: the task's declared `serving_outputs` (`logits`, `probabilities` and `label` for a
`TextClassifier`; `logits` for the language models); `token_ids`, `padding_mask` and `text`
for `generate`.

Format 1 (exports written before jieba ran in the graph) had `spec["jieba"]`: the inputs
whose text the client segmented; `keras_unitscale.serving` still does that for them.
"""

import os

# Where an export keeps its spec: TF Serving ignores `assets.extra/`, made for such files.
METADATA_FILE = os.path.join("assets.extra", "keras_unitscale.json")

# A backbone without a position table (an LSTM) has no length limit of its own; generation
# from text packs prompts to this many tokens before cutting them to `max_length`.
UNBOUNDED_LENGTH = 2048

OUTPUTS = ("logits", "probabilities", "label")
"""What a task may declare as its `serving_outputs`: its logits, their softmax, their argmax
(the exporter computes each from the logits)."""


def _ids(*names):
    return {name: {"dtype": "int32", "shape": [-1, -1]} for name in names}


def _text(*names):
    return {name: {"dtype": "string", "shape": [-1]} for name in names}


def check_task(task):
    """`task` itself when it is a task that declares what an export needs (its text inputs
    and serving outputs; see `keras_unitscale.models.Task`); `ValueError` for other models.

    Example:
    >>> import keras_unitscale as ku
    >>> task = ku.models.TextClassifier(ku.models.LSTMBackbone(20, hidden_dim=4), 2)
    >>> check_task(task) is task
    True
    """
    from keras_unitscale._tasks import registered_tasks

    declared = all(hasattr(type(task), name) for name in ("text_inputs", "serving_outputs"))
    if not declared or getattr(task, "backbone", None) is None:
        *names, last = registered_tasks()
        raise ValueError(
            f"`task` must be a keras_unitscale {', '.join(names)} or {last} (a task that "
            f"declares its text inputs and serving outputs); received "
            f"{type(task).__name__}: {task!r:.60}."
        )
    unknown = sorted(set(task.serving_outputs) - set(OUTPUTS))
    if unknown:
        raise ValueError(f"{type(task).__name__}.serving_outputs names {unknown}; an export "
                         f"computes {list(OUTPUTS)}.")
    return task


def generates(task):
    """Whether `task` declares a `generate` signature (its `prompt_input`)."""
    return getattr(task, "prompt_input", None) is not None


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
    slots = dict(task.text_inputs)
    if generates(task):
        name, slot = task.prompt_input
        slots[name] = slot
    return {name: getattr(preprocessor, slot) for name, slot in slots.items()}


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
    check_task(task)
    model_inputs = sorted(task.backbone.input)
    outputs = list(task.serving_outputs)
    signatures = {"token_ids": {"inputs": _ids(*model_inputs), "outputs": outputs}}
    has_text = task.preprocessor is not None
    if has_text:
        signatures["serving_default"] = {"inputs": _text(*task.text_inputs), "outputs": outputs}
    else:
        signatures["serving_default"] = signatures["token_ids"]
    if generates(task):
        generated = list(task.generated_keys)
        signatures["generate_token_ids"] = {"inputs": _ids(*model_inputs), "outputs": generated}
        if has_text:
            inputs = _text(task.prompt_input[0])
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
