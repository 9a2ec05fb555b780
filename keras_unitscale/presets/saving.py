"""`save_preset`: a backbone or a task to a preset directory (see `layout` for the files)."""

import json
import os

from keras_unitscale.presets import atomic, layout


def serialize(obj):
    """`keras.saving.serialize_keras_object` without compile and build state (KerasHub's).

    A preset holds an architecture and weights, not training state: a loaded task is
    compiled with its own defaults.

    Example:
    >>> import keras_unitscale as ku
    >>> config = serialize(ku.models.LSTMBackbone(vocabulary_size=10, hidden_dim=4))
    >>> config["class_name"], "build_config" in config
    ('LSTMBackbone', False)
    """
    import keras

    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items()
                    if k not in ("compile_config", "build_config")}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return strip(keras.saving.serialize_keras_object(obj))


def tokenizers_of(preprocessor):
    """`[(slot, tokenizer)]`: the distinct tokenizers a preprocessor holds, by attribute name.

    Example:
    >>> from keras_unitscale.preprocessors import TextClassifierPreprocessor
    >>> from keras_unitscale.tokenizers import CharacterTokenizer
    >>> preprocessor = TextClassifierPreprocessor(CharacterTokenizer.from_corpus(["ab"]), 4)
    >>> [slot for slot, _ in tokenizers_of(preprocessor)]
    ['tokenizer']
    """
    found = []
    for slot in layout.TOKENIZER_SLOTS:
        tokenizer = getattr(preprocessor, slot, None)
        if tokenizer is not None and all(tokenizer is not t for _, t in found):
            found.append((slot, tokenizer))
    return found


def head_weights_to_skip(task):
    """What `task.weights.h5` leaves out: the backbone, the preprocessor, the optimizer."""
    skip = list(task.backbone._flatten_layers())
    for other in (task.preprocessor, getattr(task, "optimizer", None)):
        if other is not None:
            skip.append(other)
    return skip


def has_head_weights(task):
    """Whether the task has weights of its own beyond its backbone's (a tied LM head has none).

    Example:
    >>> import keras_unitscale as ku
    >>> backbone = ku.models.LSTMBackbone(vocabulary_size=10, hidden_dim=4)
    >>> has_head_weights(ku.models.TextClassifier(backbone, num_classes=2))
    True
    """
    backbone_ids = {id(w) for w in task.backbone.weights}
    return any(id(w) not in backbone_ids for w in task.weights)


def _check_arguments(preset_dir, overwrite, include_weights):
    if not isinstance(preset_dir, (str, os.PathLike)) or not os.fspath(preset_dir):
        raise ValueError(f"`preset_dir` must be a directory path; received {preset_dir!r:.80}.")
    for name, value in (("overwrite", overwrite), ("include_weights", include_weights)):
        if not isinstance(value, bool):
            raise ValueError(f"`{name}` must be True or False; received {value!r:.80}.")
    preset_dir = os.fspath(preset_dir)
    if os.path.exists(preset_dir) and not os.path.isdir(preset_dir):
        raise ValueError(f"Cannot save a preset to {preset_dir}: it is a file, not a directory.")
    existing = os.listdir(preset_dir) if os.path.isdir(preset_dir) else []
    if existing and not overwrite:
        raise ValueError(
            f"The directory {preset_dir} is not empty ({len(existing)} entries, e.g. "
            f"{sorted(existing)[0]!r}); pass `overwrite=True` to replace a preset saved there."
        )
    return preset_dir


def _json_text(value):
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"


def _config_files(model, backbone, task, metadata):
    """`{file name: JSON text}`: every config file, serialised before anything is written."""
    files = {layout.CONFIG_FILE: _json_text(serialize(backbone))}
    if task is not None:
        files[layout.TASK_CONFIG_FILE] = _json_text(serialize(task))
        if task.preprocessor is not None:
            files[layout.PREPROCESSOR_CONFIG_FILE] = _json_text(serialize(task.preprocessor))
            for slot, tokenizer in tokenizers_of(task.preprocessor):
                files[f"{slot}.json"] = _json_text(serialize(tokenizer))
    # Serialised now, so that metadata JSON cannot hold fails before anything is written;
    # written last, with the checksums of the files staged before it.
    files[layout.METADATA_FILE] = _json_text(layout.new_metadata(model, backbone, task, metadata))
    return files


def _write_metadata(staging, text):
    """Writes `metadata.json` into a staged preset, recording the checksums of its files."""
    metadata = json.loads(text)
    metadata[layout.CHECKSUMS] = layout.file_checksums(staging)
    layout.write_text(os.path.join(staging, layout.METADATA_FILE), _json_text(metadata))


def save_preset(model, preset_dir, overwrite=False, metadata=None, include_weights=True):
    """Saves a backbone or a task (with its preprocessor) as a preset directory.

    Writes KerasHub's layout (see `keras_unitscale.presets.layout`): `config.json` and
    `model.weights.h5` for the backbone; for a task also `task.json`, `task.weights.h5` when
    the head has weights beyond the backbone, `preprocessor.json`, `tokenizer.json` and the
    vocabulary under `assets/tokenizer/`; and `metadata.json`. Optimizer state is not saved.

    The save is atomic: the arguments and the metadata are checked and every config is
    serialised first, then the files are written into a hidden staging directory and moved
    into place only once all are complete (see `keras_unitscale.presets.atomic`). If
    anything fails, a preset already at `preset_dir` is left exactly as it was.
    `metadata.json` is written last and records the size and SHA-256 of every other file
    staged (`files`), which loading checks before reading them.

    Args:
        model: a `keras_unitscale.models.Backbone` or `Task`.
        preset_dir: the directory; created if needed.
        overwrite: replace the preset files in a non-empty directory. Without it a
            non-empty directory is refused; with it only preset files are replaced, other
            files are left alone.
        metadata: a dict of extra fields for `metadata.json` (e.g. `description`,
            `label_names`, `metrics`): string keys, values that JSON holds (str, int, float,
            bool, None, lists, dicts). NumPy scalars such as a metric's `np.float32` are
            stored as Python numbers, as Keras does in configs; other values (arrays,
            tensors, objects) and the fields the library writes itself (`format_version`,
            `weights`, `files`, ...) are refused with a `ValueError` naming the key.
        include_weights: False writes an untrained architecture preset: configs only, and
            `"weights": false` in the metadata, so loading initialises the weights.

    Example:
    >>> import os, tempfile
    >>> import keras_unitscale as ku
    >>> from keras_unitscale.presets import save_preset
    >>> backbone = ku.models.LSTMBackbone(vocabulary_size=20, hidden_dim=4)
    >>> path = os.path.join(tempfile.mkdtemp(), "tiny")
    >>> save_preset(backbone, path)
    >>> sorted(os.listdir(path))
    ['config.json', 'metadata.json', 'model.weights.h5']
    """
    import keras

    # What the model is, from what its class declares (a task its `backbone_cls`; both come
    # with `PresetMixin`'s `save_to_preset`), not from the model classes.
    if not hasattr(model, "save_to_preset"):
        task = backbone = None
    elif hasattr(type(model), "backbone_cls"):
        task, backbone = model, model.backbone
    else:
        task, backbone = None, model
    if backbone is None:
        raise ValueError(
            "`save_preset` saves a keras_unitscale `Backbone` or `Task`; received "
            f"{type(model).__name__}."
        )
    preset_dir = _check_arguments(preset_dir, overwrite, include_weights)
    metadata = {**layout.check_metadata(metadata), "weights": include_weights}
    files = _config_files(model, backbone, task, metadata)
    metadata_text = files.pop(layout.METADATA_FILE)
    with atomic.staged_directory(preset_dir, entries=layout.preset_files()) as staging:
        for name, text in files.items():
            layout.write_text(os.path.join(staging, name), text)
        if include_weights:
            keras.saving.save_weights(backbone, os.path.join(staging, layout.MODEL_WEIGHTS_FILE))
            if task is not None and has_head_weights(task):
                keras.saving.save_weights(
                    task, os.path.join(staging, layout.TASK_WEIGHTS_FILE),
                    objects_to_skip=head_weights_to_skip(task),
                )
        if task is not None and task.preprocessor is not None:
            for slot, tokenizer in tokenizers_of(task.preprocessor):
                assets = os.path.join(staging, layout.ASSETS_DIR, slot)
                os.makedirs(assets)
                tokenizer.save_assets(assets)
        _write_metadata(staging, metadata_text)


def record_checksums(preset_dir):
    """Adds the checksums of a preset's files to its `metadata.json` (a preset saved before
    `save_preset` recorded them), replacing only that file, atomically; the other files are
    not touched. Returns the checksums.

    Example:
    >>> import json, os, tempfile
    >>> import keras_unitscale as ku
    >>> path = os.path.join(tempfile.mkdtemp(), "tiny")
    >>> save_preset(ku.models.LSTMBackbone(vocabulary_size=20, hidden_dim=4), path)
    >>> sorted(record_checksums(path))
    ['config.json', 'model.weights.h5']
    """
    metadata = layout.read_json(preset_dir, layout.METADATA_FILE, "the preset's metadata")
    if not isinstance(metadata, dict):
        raise ValueError(f"{os.path.join(preset_dir, layout.METADATA_FILE)} must hold a JSON "
                         f"object; it holds a {type(metadata).__name__}.")
    metadata.pop(layout.CHECKSUMS, None)
    checksums = layout.file_checksums(preset_dir)
    metadata[layout.CHECKSUMS] = checksums
    with atomic.staged_directory(preset_dir, entries=[layout.METADATA_FILE]) as staging:
        layout.write_text(os.path.join(staging, layout.METADATA_FILE), _json_text(metadata))
    return checksums
