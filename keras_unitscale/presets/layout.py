"""The files of a preset directory, its metadata and its format version.

A preset is a directory in KerasHub's layout:

    config.json            the backbone (a serialised Keras object, no compile/build state)
    model.weights.h5       the backbone's weights (absent from untrained architecture presets)
    task.json              the task: its arguments, with the backbone and preprocessor nested
    task.weights.h5        the head's own weights, those not in the backbone (if it has any)
    preprocessor.json      the preprocessor, its tokenizers nested
    tokenizer.json         the tokenizer (and decoder_tokenizer.json for a second one)
    assets/tokenizer/      the tokenizer's vocabulary files (assets/decoder_tokenizer/ too)
    metadata.json          versions, backend, format version, parameter count, class names,
                           and `files`: the SHA-256 and size of every other file, checked on
                           loading (a truncated or altered file is refused, naming it)

`task.json` alone describes the whole task; `config.json`, `preprocessor.json` and
`tokenizer.json` let the backbone, the preprocessor or the tokenizer be loaded on their own.
"""

import datetime
import hashlib
import json
import os

CONFIG_FILE = "config.json"
MODEL_WEIGHTS_FILE = "model.weights.h5"
TASK_CONFIG_FILE = "task.json"
TASK_WEIGHTS_FILE = "task.weights.h5"
PREPROCESSOR_CONFIG_FILE = "preprocessor.json"
METADATA_FILE = "metadata.json"
ASSETS_DIR = "assets"
# Attribute names under which a preprocessor holds tokenizers; each gets `<name>.json` and
# `assets/<name>/` (KerasHub's single tokenizer is `tokenizer.json`, `assets/tokenizer/`).
TOKENIZER_SLOTS = ("tokenizer", "decoder_tokenizer")

# Bump when a reader of the old format could misread a new preset; readers refuse newer ones.
FORMAT_VERSION = 1


def preset_files():
    """Every file and folder name that `save_preset` may write (what `overwrite` replaces).

    >>> "model.weights.h5" in preset_files() and "assets" in preset_files()
    True
    """
    names = [CONFIG_FILE, MODEL_WEIGHTS_FILE, TASK_CONFIG_FILE, TASK_WEIGHTS_FILE,
             PREPROCESSOR_CONFIG_FILE, METADATA_FILE, ASSETS_DIR]
    return names + [f"{slot}.json" for slot in TOKENIZER_SLOTS]


def write_text(path, text):
    """Writes `text` as UTF-8 with Unix newlines (the one writer of a preset's JSON files)."""
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)


# The fields of `metadata.json` that the library writes itself (see `new_metadata`).
RESERVED_METADATA = ("format_version", "keras_version", "keras_unitscale_version", "backend",
                     "date_saved", "class_name", "task", "backbone", "parameter_count",
                     "weights", "files")


def check_metadata(metadata):
    """The user's extra `metadata` for `metadata.json`, checked before anything is written.

    A dict with string keys, none of `RESERVED_METADATA`, and values that JSON holds (str,
    int, float, bool, None, lists, tuples, dicts, nested). NumPy scalars become Python
    numbers, as Keras does in configs (`np.float32(0.9)` from a metric is what users pass);
    anything else is refused with a `ValueError` naming the key and the type.

    Example:
    >>> import numpy as np
    >>> check_metadata({"metrics": {"accuracy": np.float32(0.5)}})
    {'metrics': {'accuracy': 0.5}}
    >>> try:
    ...     check_metadata({"scores": np.zeros(3)})
    ... except ValueError as e:
    ...     print(str(e).split(";")[0])
    `metadata['scores']` must be a JSON value (str, int, float, bool, None, list or dict of them)
    """
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise ValueError(
            f"`metadata` must be a dict of extra fields (or None); received "
            f"{type(metadata).__name__} {metadata!r:.80}."
        )
    reserved = sorted(set(metadata) & set(RESERVED_METADATA))
    if reserved:
        raise ValueError(
            f"`metadata` may not set {reserved}: `save_preset` writes these fields itself "
            f"(all of them: {list(RESERVED_METADATA)}); use `include_weights=` for `weights`."
        )
    return _json_value(metadata, "metadata")


def _json_value(value, where):
    import numpy as np

    if isinstance(value, np.generic):
        value = value.item()  # a NumPy scalar: the Python number (or bool, str) it holds
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, (list, tuple)):
        return [_json_value(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        for key in value:
            if not isinstance(key, str):
                raise ValueError(
                    f"`{where}` must have string keys (JSON object keys are strings); "
                    f"received the key {key!r:.60} of type {type(key).__name__}."
                )
        return {k: _json_value(v, f"{where}[{k!r}]") for k, v in value.items()}
    kind = type(value).__qualname__
    if type(value).__module__ != "builtins":
        kind = f"{type(value).__module__}.{kind}"
    hint = " (convert it with `.tolist()`)" if hasattr(value, "tolist") else ""
    raise ValueError(
        f"`{where}` must be a JSON value (str, int, float, bool, None, list or dict of them); "
        f"received {kind} {value!r:.60}{hint}."
    )


def read_json(preset_dir, file_name, what=None):
    """Reads `preset_dir/file_name`; a missing or malformed file raises a clear error."""
    path = os.path.join(preset_dir, file_name)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"The preset directory {preset_dir} has no {file_name}"
            + (f" ({what})" if what else "")
            + "; it is incomplete or not a keras-unitscale preset."
        )
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} is not valid UTF-8 JSON: {e}") from None


def read_object(preset_dir, file_name, what):
    """Reads a serialised Keras object (`config.json`, `task.json`, ...) and checks its shape.

    Example:
    >>> import os, tempfile
    >>> directory = tempfile.mkdtemp()
    >>> write_text(os.path.join(directory, "config.json"), '{"class_name": "LSTMBackbone"}')
    >>> try:
    ...     read_object(directory, "config.json", "the backbone's config")
    ... except ValueError as e:
    ...     print(str(e).split(": ")[1])
    expected a serialised Keras object, a JSON object with a "config" object; it has no "config".
    """
    return check_object(read_json(preset_dir, file_name, what),
                        os.path.join(preset_dir, file_name), what)


def check_object(value, path, what, key=None):
    """`value` if it is a serialised Keras object (a dict with `class_name` and a `config`
    dict), else a `ValueError` naming `path` (and the `key` it sits under in that file)."""
    where = f"{path} ({what}{f', under {key!r}' if key else ''})"
    expected = 'expected a serialised Keras object, a JSON object with a "config" object'
    if not isinstance(value, dict):
        raise ValueError(f"{where}: {expected}; it holds a {type(value).__name__}.")
    for field, kind in (("config", dict), ("class_name", str)):
        if field not in value:
            raise ValueError(f'{where}: {expected}; it has no "{field}".')
        if not isinstance(value[field], kind):
            raise ValueError(f'{where}: {expected}; its "{field}" is a '
                             f"{type(value[field]).__name__}, not a {kind.__name__}.")
    return value


def check_weights_file(path, what):
    """Refuses a weights file that HDF5 cannot open (truncated, empty, not HDF5), naming it.

    Example:
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "model.weights.h5")
    >>> write_text(path, "not hdf5")
    >>> try:
    ...     check_weights_file(path, "the backbone's weights")
    ... except ValueError as e:
    ...     print(path in str(e), "truncated or corrupt" in str(e))
    True True
    """
    import h5py

    try:
        with h5py.File(path, "r"):
            pass
    except (OSError, RuntimeError) as e:
        raise ValueError(
            f"{path} ({what}) is not a readable Keras weights file (HDF5): {e}. It is truncated "
            "or corrupt; save the preset again or copy it again from its source."
        ) from None


def new_metadata(model, backbone, task, extra=None):
    """The `metadata.json` of a preset of `model` (a backbone or a task) saved now.

    Example:
    >>> import keras_unitscale as ku
    >>> backbone = ku.models.LSTMBackbone(vocabulary_size=20, hidden_dim=4, bidirectional=False)
    >>> meta = new_metadata(backbone, backbone, None)
    >>> meta["format_version"], meta["class_name"], meta["parameter_count"]
    (1, 'LSTMBackbone', 224)
    """
    import keras

    from keras_unitscale._version import __version__

    metadata = {
        "format_version": FORMAT_VERSION,
        "keras_version": keras.version(),
        "keras_unitscale_version": __version__,
        "backend": keras.backend.backend(),
        "date_saved": datetime.datetime.now(datetime.timezone.utc).strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        ),
        "class_name": type(model).__name__,
        "task": None if task is None else type(task).__name__,
        "backbone": type(backbone).__name__,
        "parameter_count": int(model.count_params()),
        "weights": True,
    }
    metadata.update(extra or {})
    return metadata


def check_format(metadata, preset_dir):
    """Refuses a preset written in a newer format than this version of the library reads."""
    version = metadata.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ValueError(
            f"{os.path.join(preset_dir, METADATA_FILE)} has no integer `format_version`; it is "
            "not a keras-unitscale preset."
        )
    if version > FORMAT_VERSION:
        from keras_unitscale._version import __version__

        raise ValueError(
            f"The preset {preset_dir} uses preset format {version}, newer than the format "
            f"{FORMAT_VERSION} that keras-unitscale {__version__} reads. "
            "Upgrade keras-unitscale (`pip install -U keras-unitscale`) to load it."
        )


# Checksums ---------------------------------------------------------------------------------
# `metadata.json`'s `files`: {path relative to the preset, "/"-separated: {"sha256", "bytes"}}
# for every file the save wrote but `metadata.json` itself; presets saved before it have none.
CHECKSUMS = "files"
_WHAT = {CONFIG_FILE: "the backbone's config", MODEL_WEIGHTS_FILE: "the backbone's weights",
         TASK_CONFIG_FILE: "the task's config", TASK_WEIGHTS_FILE: "the head's weights",
         PREPROCESSOR_CONFIG_FILE: "the preprocessor's config"}


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_checksums(directory):
    """`{relative path: {"sha256": hex, "bytes": size}}` of every preset file under
    `directory` (`preset_files()`, and those under `assets/`) except `metadata.json`: what
    `save_preset` records from its staged files. Other files (a user's notes) are left out.

    Example:
    >>> import os, tempfile
    >>> directory = tempfile.mkdtemp()
    >>> write_text(os.path.join(directory, "config.json"), "{}")
    >>> file_checksums(directory)["config.json"]["bytes"]
    2
    """
    found, names = {}, set(preset_files()) - {METADATA_FILE}
    for root, dirs, files in os.walk(directory):
        if root == directory:
            dirs[:] = [name for name in dirs if name in names]
            files = [name for name in files if name in names]
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(root, name)
            relative = os.path.relpath(path, directory).replace(os.sep, "/")
            found[relative] = {"sha256": _sha256(path), "bytes": os.path.getsize(path)}
    return found


def _described(relative):
    if relative in _WHAT:
        return _WHAT[relative]
    parts = relative.split("/")
    if relative.endswith(".json") and len(parts) == 1:
        return f"the {relative[:-5]}"  # tokenizer.json: the tokenizer
    if parts[0] == ASSETS_DIR and len(parts) > 2:
        return f"the {parts[1]}'s vocabulary"
    return "a preset file"


def verify_files(preset_dir, metadata):
    """Checks every file `metadata["files"]` records against its size and SHA-256, before any
    is read: a missing, truncated or altered file raises an error naming it (a preset saved
    before checksums records none and is not checked).

    Example:
    >>> import os, tempfile
    >>> directory = tempfile.mkdtemp()
    >>> write_text(os.path.join(directory, "config.json"), '{"config": {}}')
    >>> metadata = {"files": file_checksums(directory)}
    >>> verify_files(directory, metadata)
    >>> write_text(os.path.join(directory, "config.json"), '{"config": []}')  # same size
    >>> try:
    ...     verify_files(directory, metadata)
    ... except ValueError as e:
    ...     print(str(e).split(": ")[1].split(",")[0])
    it is corrupt
    """
    recorded = metadata.get(CHECKSUMS)
    if recorded is None:
        return
    where = os.path.join(preset_dir, METADATA_FILE)
    if not isinstance(recorded, dict):
        raise ValueError(f'{where}: "{CHECKSUMS}" must map file names to their checksums; it '
                         f"holds a {type(recorded).__name__}.")
    for relative, entry in sorted(recorded.items()):
        parts = relative.split("/")
        if (not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str)
                or not isinstance(entry.get("bytes"), int) or os.path.isabs(relative)
                or ".." in parts):
            raise ValueError(f'{where}: the "{CHECKSUMS}" entry {relative!r:.80} must be a '
                             'relative path mapped to {"sha256": hex, "bytes": size}; received '
                             f"{entry!r:.80}.")
        path = os.path.join(preset_dir, *parts)
        what = _described(relative)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"{path} ({what}) is missing: the preset is incomplete (its metadata records "
                "the file). Copy the preset again from its source or save it again.")
        size = os.path.getsize(path)
        if size != entry["bytes"]:
            raise ValueError(
                f"{path} ({what}): it is incomplete or corrupt, {size} bytes where the "
                f"preset's metadata records {entry['bytes']} (truncated while copying or "
                "downloading?). Copy the preset again from its source or save it again.")
        if _sha256(path) != entry["sha256"]:
            raise ValueError(
                f"{path} ({what}): it is corrupt, its SHA-256 differs from the one the "
                "preset's metadata recorded when it was saved. Copy the preset again from "
                f'its source or save it again (a file edited on purpose: delete its entry from '
                f'"{CHECKSUMS}" in {METADATA_FILE}).')
