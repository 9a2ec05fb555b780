"""`load_preset`: a backbone or a task from a built-in preset name or a directory path.

This module resolves names, reads metadata and builds backbones, preprocessors and
tokenizers; `task_loading` builds a task on top of them.
"""

import importlib
import inspect
import os

from keras_unitscale.presets import layout, registry
from keras_unitscale.presets.saving import tokenizers_of

# An untrained architecture preset is a size, not weights: a task that needs another kind of
# backbone builds that kind from the same hyperparameters (task -> stored -> built, extras).
_TASK_BACKBONES = {
    "CausalLM": {
        "TransformerEncoderBackbone": ("TransformerDecoderBackbone", {}),
        "LSTMBackbone": ("LSTMBackbone", {"bidirectional": False}),
    },
    "Seq2SeqLM": {"TransformerEncoderBackbone": ("Seq2SeqBackbone", {})},
}
_TRANSFORMERS = {"TransformerEncoderBackbone", "TransformerDecoderBackbone", "Seq2SeqBackbone"}
_ALWAYS_ACCEPTED = ("name", "trainable", "dtype")


def resolve_preset(preset):
    """The directory of `preset`: an existing directory path, or a built-in preset's name.

    Raises `ValueError` naming the valid presets and the closest matches for an unknown
    name, and `FileNotFoundError` for a built-in preset that has not been trained yet.

    Example:
    >>> import os
    >>> os.path.basename(resolve_preset("transformer_tiny"))
    'transformer_tiny'
    >>> try:
    ...     resolve_preset("transformer_tyni")
    ... except ValueError as e:
    ...     print(str(e).split(",")[0])
    Unknown preset 'transformer_tyni'; did you mean 'transformer_tiny'
    """
    if not isinstance(preset, (str, os.PathLike)):
        raise ValueError(
            f"`preset` must be a preset name or a directory path; received {preset!r:.80}."
        )
    path = os.fspath(preset)
    if os.path.isdir(path):
        return path
    if path in registry.BUILTIN_PRESETS:
        if not registry.is_available(path):
            raise FileNotFoundError(
                f"The built-in preset {path!r} has not been trained yet: its files are made by "
                f"`python tools/train_presets.py {path}` (see docs/presets.md)."
            )
        return registry.builtin_dir(path)
    if os.path.exists(path):
        raise ValueError(f"A preset is a directory; {path} is a file.")
    raise ValueError(registry.unknown_preset_message(path))


def read_metadata(preset):
    """The `metadata.json` of a preset (a name or a path), after checking its format version.

    Example:
    >>> read_metadata("transformer_tiny")["backbone"]
    'TransformerEncoderBackbone'
    """
    preset_dir = resolve_preset(preset)
    metadata = layout.read_json(preset_dir, layout.METADATA_FILE, "the preset's metadata")
    if not isinstance(metadata, dict):
        raise ValueError(
            f"{os.path.join(preset_dir, layout.METADATA_FILE)} must hold a JSON object (the "
            f"preset's metadata); it holds a {type(metadata).__name__}."
        )
    layout.check_format(metadata, preset_dir)
    return metadata


def _import_modules(config):
    """Imports the keras_unitscale modules a serialised config names, so that their classes
    are registered before Keras looks them up (only this package's own modules)."""
    if isinstance(config, dict):
        module = config.get("module")
        if isinstance(module, str) and module.split(".")[0] == "keras_unitscale":
            importlib.import_module(module)
        for value in config.values():
            _import_modules(value)
    elif isinstance(config, list):
        for value in config:
            _import_modules(value)
    return config


def _registered_class(config, file_name):
    import keras

    _import_modules(config)
    klass = None
    if isinstance(config, dict) and config.get("registered_name"):
        klass = keras.saving.get_registered_object(config["registered_name"])
    if klass is None:
        name = config.get("class_name") if isinstance(config, dict) else config
        raise ValueError(
            f"{file_name} describes {name!r}, which is not a registered Keras class (is the "
            "package that defines it imported?)."
        )
    return klass


def _arguments(klass):
    """The constructor arguments `klass` takes by name, up its keras_unitscale bases."""
    names = set(_ALWAYS_ACCEPTED)
    for base in klass.__mro__:
        if not base.__module__.startswith("keras_unitscale"):
            break
        init = base.__dict__.get("__init__")
        if init is None:
            continue
        params = inspect.signature(init).parameters.values()
        names |= {p.name for p in params
                  if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            break  # A constructor without **kwargs passes nothing further up.
    return names


def deserialize(config, path, what):
    """`keras.saving.deserialize_keras_object` of a config read from `path`: a config the
    class does not take (a `TypeError` of its constructor) is a `ValueError` naming the file."""
    import keras

    try:
        return keras.saving.deserialize_keras_object(config)
    except TypeError as e:
        raise ValueError(f"{path} ({what}) holds a config that cannot be loaded: {e}") from None


def from_config(klass, config, path, what):
    """`klass.from_config(config)`, with `deserialize`'s error for a config it does not take."""
    try:
        return klass.from_config(config)
    except TypeError as e:
        raise ValueError(f"{path} ({what}) holds a config that {klass.__name__} cannot take: "
                         f"{e}") from None


def load_weights_file(model, path, what, overrides=(), **kwargs):
    """`keras.saving.load_weights` from a preset's file (`what` says which). A truncated or
    corrupt file, or one that does not fit `model`, is a `ValueError` naming the file (and
    the `overrides` the model was built with, if any)."""
    import keras

    layout.check_weights_file(path, what)
    try:
        keras.saving.load_weights(model, path, **kwargs)
    except Exception as e:  # h5py and Keras raise OSError, KeyError, RuntimeError, ValueError
        fit = (f"do not fit the model built with the overrides {sorted(overrides)}"
               if overrides else f"cannot be loaded into the {type(model).__name__}")
        raise ValueError(f"{path} ({what}) {fit}: {type(e).__name__}: {e}") from None


# Backbones -----------------------------------------------------------------------------------
def _backbone_class_and_config(preset_dir, metadata, cls, task_name):
    config = layout.read_object(preset_dir, layout.CONFIG_FILE, "the backbone's config")
    stored = _registered_class(config, os.path.join(preset_dir, layout.CONFIG_FILE))
    inner = dict(config["config"])
    target, extras = stored, {}
    untrained = not metadata.get("weights", True)
    if untrained and task_name in _TASK_BACKBONES:
        name, extras = _TASK_BACKBONES[task_name].get(stored.__name__, (stored.__name__, {}))
        target = registered_backbone(name)
    elif cls is not None and not issubclass(stored, cls):
        if not (untrained and {stored.__name__, cls.__name__} <= _TRANSFORMERS):
            raise ValueError(
                f"The preset {preset_dir} holds a {stored.__name__}, not a {cls.__name__}; load "
                f"it with {stored.__name__}.from_preset (or Backbone.from_preset)."
            )
        target = cls  # An untrained transformer size, built as another transformer kind.
    if target is not stored:
        inner.pop("name", None)
        accepted = _arguments(target)
        inner = {k: v for k, v in inner.items() if k in accepted}
    inner.update(extras)
    return target, inner


def registered_backbone(name):
    """The backbone class registered as `keras_unitscale>name`.

    >>> registered_backbone("LSTMBackbone").__name__
    'LSTMBackbone'
    """
    import keras

    import keras_unitscale.models  # noqa: F401  (registers the backbone classes)
    from keras_unitscale.models import backbones  # noqa: F401

    return keras.saving.get_registered_object(f"keras_unitscale>{name}")


def _build_backbone(target, inner, overrides, preset_dir, metadata, load_weights):
    import keras

    accepted = set(inner) | _arguments(target)
    unknown = sorted(set(overrides) - accepted)
    if unknown:
        raise ValueError(
            f"Unknown override(s) {unknown} for {target.__name__}; it accepts "
            f"{sorted(accepted)}."
        )
    # As KerasHub: the model follows the global dtype policy unless `dtype=` is given (the
    # saved float weights are cast on loading).
    inner = {**inner, "dtype": keras.config.dtype_policy().name}
    backbone = from_config(target, {**inner, **overrides}, preset_dir, "the backbone's config")
    if load_weights and metadata.get("weights", True):
        path = os.path.join(preset_dir, layout.MODEL_WEIGHTS_FILE)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"The preset directory {preset_dir} has no {layout.MODEL_WEIGHTS_FILE} (the "
                "backbone's weights); it is incomplete."
            )
        load_weights_file(backbone, path, "the backbone's weights", overrides)
    return backbone


# Preprocessors and tokenizers ---------------------------------------------------------------
def _load_assets(preprocessor, preset_dir):
    for slot, tokenizer in tokenizers_of(preprocessor):
        assets = os.path.join(preset_dir, layout.ASSETS_DIR, slot)
        if not os.path.isdir(assets):
            raise FileNotFoundError(
                f"The preset directory {preset_dir} has no {layout.ASSETS_DIR}/{slot}/ (the "
                f"{slot}'s vocabulary); it is incomplete."
            )
        _load_tokenizer_assets(tokenizer, assets, slot)
    return preprocessor


def _load_tokenizer_assets(tokenizer, assets, slot):
    try:
        tokenizer.load_assets(assets)
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise ValueError(
            f"The {slot}'s vocabulary in {assets} cannot be loaded (truncated, corrupt or "
            f"not from this preset?): {e}"
        ) from None


def load_preprocessor(preset):
    """The preprocessor of a task preset, its tokenizers' vocabularies loaded.

    Example:
    >>> load_preprocessor("transformer_tiny") is None  # an architecture has none
    True
    """
    preset_dir = resolve_preset(preset)
    read_metadata(preset_dir)
    if not os.path.isfile(os.path.join(preset_dir, layout.PREPROCESSOR_CONFIG_FILE)):
        return None
    what = "the preprocessor's config"
    config = _import_modules(
        layout.read_object(preset_dir, layout.PREPROCESSOR_CONFIG_FILE, what))
    path = os.path.join(preset_dir, layout.PREPROCESSOR_CONFIG_FILE)
    return _load_assets(deserialize(config, path, what), preset_dir)


def load_tokenizer(preset, slot="tokenizer"):
    """A tokenizer of a task preset (`"tokenizer"` or `"decoder_tokenizer"`), with its vocabulary.

    Example:
    >>> try:
    ...     load_tokenizer("transformer_tiny")
    ... except FileNotFoundError as e:
    ...     print("no tokenizer")
    no tokenizer
    """
    if slot not in layout.TOKENIZER_SLOTS:
        raise ValueError(
            f"`slot` must be one of {list(layout.TOKENIZER_SLOTS)}; received {slot!r}."
        )
    preset_dir = resolve_preset(preset)
    read_metadata(preset_dir)
    config = _import_modules(layout.read_object(preset_dir, f"{slot}.json", f"the {slot}"))
    tokenizer = deserialize(config, os.path.join(preset_dir, f"{slot}.json"), f"the {slot}")
    assets = os.path.join(preset_dir, layout.ASSETS_DIR, slot)
    if not os.path.isdir(assets):
        raise FileNotFoundError(f"The preset directory {preset_dir} has no assets/{slot}/.")
    _load_tokenizer_assets(tokenizer, assets, slot)
    return tokenizer


# Entry point -----------------------------------------------------------------------------
def load_preset(cls, preset, load_weights=True, **overrides):
    """Builds `cls` (a backbone or task class) from a preset: what `cls.from_preset` does.

    Args:
        cls: `keras_unitscale.models.Backbone`, `Task` or one of their subclasses. A base
            class loads whatever class the preset holds; a subclass must match it.
        preset: a built-in preset name (see `keras_unitscale.list_presets()`) or the path of
            a preset directory.
        load_weights: load the saved weights (else they are freshly initialised).
        **overrides: constructor arguments replacing the saved ones. For a task they go to
            the task if it takes them (`num_classes`, `preprocessor`, `name`, ...), else to
            the backbone (`dtype`, `dropout`, ...), else to the preprocessor
            (`sequence_length`, ...). With a `preprocessor=` and an untrained architecture
            preset, the vocabulary sizes follow the preprocessor's tokenizers.

    Returns:
        The model, weights loaded; a task comes compiled with its defaults.

    Example:
    >>> import numpy as np
    >>> import keras_unitscale as ku
    >>> from keras_unitscale.presets import load_preset
    >>> backbone = load_preset(ku.models.Backbone, "transformer_tiny", vocabulary_size=50)
    >>> x = {"token_ids": np.array([[5, 6, 7]]), "padding_mask": np.array([[1, 1, 1]])}
    >>> type(backbone).__name__, tuple(backbone(x).shape)
    ('TransformerEncoderBackbone', (1, 3, 64))
    """
    from keras_unitscale.models.backbone import Backbone
    from keras_unitscale.models.task import Task

    preset_dir = resolve_preset(preset)
    metadata = read_metadata(preset_dir)
    if isinstance(cls, type) and issubclass(cls, Task):
        from keras_unitscale.presets.task_loading import load_task

        return load_task(cls, preset_dir, metadata, load_weights, overrides)
    if isinstance(cls, type) and issubclass(cls, Backbone):
        if "preprocessor" in overrides:
            raise ValueError("A backbone has no preprocessor; `preprocessor=` is for tasks.")
        target, inner = _backbone_class_and_config(preset_dir, metadata, cls, None)
        return _build_backbone(target, inner, overrides, preset_dir, metadata, load_weights)
    raise ValueError(
        f"`cls` must be a keras_unitscale Backbone or Task class; received {cls!r:.80}."
    )
