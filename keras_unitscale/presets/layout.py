"""The files of a preset directory, its metadata and its format version.

A preset is a directory in KerasHub's layout:

    config.json            the backbone (a serialised Keras object, no compile/build state)
    model.weights.h5       the backbone's weights (absent from untrained architecture presets)
    task.json              the task: its arguments, with the backbone and preprocessor nested
    task.weights.h5        the head's own weights, those not in the backbone (if it has any)
    preprocessor.json      the preprocessor, its tokenizers nested
    tokenizer.json         the tokenizer (and decoder_tokenizer.json for a second one)
    assets/tokenizer/      the tokenizer's vocabulary files (assets/decoder_tokenizer/ too)
    metadata.json          versions, backend, format version, parameter count, class names

`task.json` alone describes the whole task; `config.json`, `preprocessor.json` and
`tokenizer.json` let the backbone, the preprocessor or the tokenizer be loaded on their own.
"""

import datetime
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


def write_json(path, value):
    """Writes `value` as indented UTF-8 JSON (non-ASCII kept readable)."""
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        json.dump(value, f, indent=2, ensure_ascii=False)
        f.write("\n")


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

    import keras_unitscale

    metadata = {
        "format_version": FORMAT_VERSION,
        "keras_version": keras.version(),
        "keras_unitscale_version": keras_unitscale.__version__,
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
        import keras_unitscale

        raise ValueError(
            f"The preset {preset_dir} uses preset format {version}, newer than the format "
            f"{FORMAT_VERSION} that keras-unitscale {keras_unitscale.__version__} reads. "
            "Upgrade keras-unitscale (`pip install -U keras-unitscale`) to load it."
        )
