"""`export_task`: a task model as a SavedModel in TF Serving's `path/<version>/` layout.

The numeric parts (the model's forward pass, greedy decoding) are endpoints of a
`keras.export.ExportArchive`: a `tf.function` on TensorFlow, a jax2tf conversion (one
`XlaCallModule` op) on JAX. The text signatures are `tf.function`s around them that run the
task's own preprocessor in TensorFlow ops before and, for `generate`, its detokenizer after.
"""

import json
import os

import keras
import tensorflow as tf
from keras import ops

from keras_unitscale import backend
from keras_unitscale.export import graph
from keras_unitscale.export import spec as spec_lib
from keras_unitscale.presets import atomic
from keras_unitscale.samplers import get_sampler

# How each declared serving output (`spec.OUTPUTS`) is computed from the logits.
_FROM_LOGITS = {
    "logits": lambda logits: logits,
    "probabilities": lambda logits: ops.softmax(logits, axis=-1),
    "label": lambda logits: ops.cast(ops.argmax(logits, axis=-1), "int32"),
}


def _version_directory(path, version, overwrite):
    """Checks the arguments and returns `path/<version>` (not yet written)."""
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(
            "`version` must be a positive int, the name of TF Serving's version directory; "
            f"received {version!r}."
        )
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"`path` must be a directory path; received {path!r:.60}.")
    path = os.fspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"`path` must be a directory (TF Serving's model base path); {path!r} "
                         "is a file.")
    target = os.path.join(path, str(version))
    if os.path.exists(target) and not overwrite:
        raise FileExistsError(
            f"Version {version} already exists at {target!r}; pass `overwrite=True` to replace "
            "it, or a new `version`."
        )
    return target


def _check_ready(task):
    if not getattr(task, "built", False):
        raise ValueError(
            f"`task` ({type(task).__name__}) has not been built: call it on a batch or run "
            "`predict` before exporting."
        )
    if task.preprocessor is not None and not task.preprocessor.built:
        try:
            task.preprocessor.build(None)
        except ValueError as error:
            raise ValueError(f"`task.preprocessor` cannot run, so `task` cannot be exported: "
                             f"{error}") from None


def _int32(features):
    return {name: tf.cast(value, tf.int32) for name, value in features.items()}


def _id_specs(signature):
    return {name: tf.TensorSpec([None, None], tf.int32, name=name)
            for name in signature["inputs"]}


def _shape_options(task, names):
    # One length symbol per side of the model: inputs of one side share it.
    shapes, dims = {}, set()
    for name in names:
        dim = name.split("_")[0] + "_length" if name.startswith(("encoder", "decoder")) else (
            "length")
        shapes[name] = f"(batch, {dim})"
        dims.add(dim)
    limit = spec_lib.sequence_limit(task)
    constraints = [f"{dim} <= {limit}" for dim in sorted(dims)] if limit else []
    return backend.export_endpoint_options(shapes, constraints)


def _model_outputs(task):
    names = tuple(task.serving_outputs)

    def outputs(inputs):
        logits = ops.cast(task(inputs, training=False), "float32")
        return {name: _FROM_LOGITS[name](logits) for name in names}

    return outputs


def _generated_ids(task):
    sampler = get_sampler("greedy")
    stop = None if task.preprocessor is None else (task.end_token_id,)

    def generate(inputs):
        outputs = task.generate_step(inputs, sampler, stop)
        return {name: ops.cast(value, "int32") for name, value in outputs.items()}

    return generate


def _raw(names, texts):
    """Raw inputs as the preprocessor takes them: one text input alone, several as a dict."""
    return texts[0] if len(names) == 1 else dict(zip(names, texts))


def _text_signature(task, text_names, model_fn):
    preprocessor = task.preprocessor

    def serve(*texts):
        features = keras.utils.unpack_x_y_sample_weight(preprocessor(_raw(text_names, texts)))[0]
        return model_fn(_int32(features))

    specs = [tf.TensorSpec([None], tf.string, name=name) for name in text_names]
    return tf.function(serve, input_signature=specs, autograph=False)


def _generate_signature(task, prompt_name, ids_fn):
    limit = spec_lib.sequence_limit(task) or spec_lib.UNBOUNDED_LENGTH
    ids_key, mask_key = task.generated_keys
    several = len(task.text_inputs) > 1

    def generate(prompt, max_length):
        # Packed to the longest length, then cut: the packer needs a Python length, and
        # cutting `[START] ids... [PAD]...` gives exactly the packing to `max_length`.
        packed = task.pack_prompts({prompt_name: prompt} if several else prompt, limit)
        longest = tf.reduce_max(tf.reduce_sum(tf.cast(packed[mask_key], tf.int32), axis=-1))
        checks = [
            tf.debugging.assert_less_equal(
                max_length, limit,
                message=f"`max_length` must be at most {limit}, the positions of the model"),
            tf.debugging.assert_greater(
                max_length, longest,
                message="`max_length` must be longer than the longest prompt (its tokens and "
                        "the start token): nothing could be generated"),
        ]
        with tf.control_dependencies(checks):
            packed = {name: value[:, :max_length] if name in (ids_key, mask_key) else value
                      for name, value in packed.items()}
        outputs = ids_fn(_int32(packed))
        text = task.preprocessor.generate_postprocess(outputs)
        return {"token_ids": outputs[ids_key], "padding_mask": outputs[mask_key], "text": text}

    specs = [tf.TensorSpec([None], tf.string, name=prompt_name),
             tf.TensorSpec([], tf.int32, name="max_length")]
    return tf.function(generate, input_signature=specs, autograph=False)


def _add_traced(archive, name, function):
    concrete = function.get_concrete_function()
    graph.check_no_python(graph.op_types(concrete), name)
    archive.add_endpoint(name, function)


def _archive(task, signatures):
    archive = keras.export.ExportArchive()
    archive.track(task)
    if task.preprocessor is not None:
        for trackable in graph.tf_trackables(task.preprocessor):
            archive.track(trackable)
    id_names = list(signatures["token_ids"]["inputs"])
    model_fn = archive.add_endpoint(
        "token_ids", _model_outputs(task),
        input_signature=[_id_specs(signatures["token_ids"])], **_shape_options(task, id_names))
    ids_fn = None
    if "generate_token_ids" in signatures:
        ids_fn = archive.add_endpoint(
            "generate_token_ids", _generated_ids(task),
            input_signature=[_id_specs(signatures["generate_token_ids"])],
            **_shape_options(task, id_names))
    if task.preprocessor is None:
        archive.add_endpoint("serving_default", model_fn)
        return archive
    text_names = list(signatures["serving_default"]["inputs"])
    _add_traced(archive, "serving_default", _text_signature(task, text_names, model_fn))
    if "generate" in signatures:
        prompt_name = next(iter(signatures["generate"]["inputs"]))
        _add_traced(archive, "generate", _generate_signature(task, prompt_name, ids_fn))
    return archive


def export_task(task, path, version=1, overwrite=False, verbose=False):
    """Writes `task` as a SavedModel for TF Serving, at `path/<version>/`.

    `path` is the model's base path (what TF Serving's `--model_base_path` points at); the
    version directory holds `saved_model.pb`, `variables/` and
    `assets.extra/keras_unitscale.json` (the signatures, read by `keras_unitscale.serving`).
    It is written into a hidden directory beside the versions and renamed into place only
    when complete (see `keras_unitscale.presets.atomic`), so a server watching `path` never
    loads half a model, and a failed export leaves an existing version as it was. The
    signatures are described in `keras_unitscale.export.spec`. Works on the TensorFlow and
    JAX backends alike (JAX through jax2tf); the result needs only TensorFlow's own ops
    (TF Text's too for a SentencePiece tokenizer, the one that still uses it).

    Args:
        task: a task (`TextClassifier`, `CausalLM`, `Seq2SeqLM`, or another that declares
            its text inputs and serving outputs; see `keras_unitscale.models.Task`).
        path: the base directory (created if missing).
        version: positive int, the version directory's name.
        overwrite: replace an existing `path/<version>`; otherwise that is a
            `FileExistsError`.
        verbose: print the endpoints as Keras' `ExportArchive` does.

    Returns:
        The version directory, `path/<version>`.

    Example:
    >>> import tempfile
    >>> import tensorflow as tf
    >>> import keras_unitscale as ku
    >>> from keras_unitscale.export import export_task
    >>> from keras_unitscale.preprocessors import TextClassifierPreprocessor
    >>> from keras_unitscale.tokenizers import CharacterTokenizer
    >>> preprocessor = TextClassifierPreprocessor(
    ...     CharacterTokenizer.from_corpus(["很好", "太差"]), sequence_length=6)
    >>> backbone = ku.models.LSTMBackbone(preprocessor.tokenizer.vocabulary_size(), hidden_dim=4)
    >>> classifier = ku.models.TextClassifier(backbone, 2, preprocessor=preprocessor)
    >>> directory = export_task(classifier, tempfile.mkdtemp())
    >>> outputs = tf.saved_model.load(directory).signatures["serving_default"](
    ...     text=tf.constant(["很好", "太差了"]))
    >>> tuple(outputs["probabilities"].shape), outputs["label"].dtype.name
    ((2, 2), 'int32')
    """
    spec_lib.check_task(task)
    target = _version_directory(path, version, overwrite)
    _check_ready(task)
    spec = spec_lib.serving_spec(task)
    spec_text = json.dumps(spec, ensure_ascii=False, indent=1)  # before anything is written
    with atomic.staged_directory(target) as staging:  # replaces `target` only when complete
        graph.build_resources(spec_lib.text_tokenizers(task).values())
        _archive(task, spec["signatures"]).write_out(staging, verbose=verbose)
        graph.check_no_python(graph.saved_op_types(staging), "saved")
        os.makedirs(os.path.join(staging, "assets.extra"), exist_ok=True)
        _write_spec(os.path.join(staging, spec_lib.METADATA_FILE), spec_text)
    return target


def _write_spec(path, text):
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
