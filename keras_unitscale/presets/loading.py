"""`load_preset`: a backbone or a task from a built-in preset name or a directory path."""

import importlib
import inspect
import os
import warnings

from keras_unitscale.presets import layout, registry
from keras_unitscale.presets.saving import head_weights_to_skip, tokenizers_of

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


def _load_weights(model, path, overrides, what, **kwargs):
    import keras

    try:
        keras.saving.load_weights(model, path, **kwargs)
    except ValueError as e:
        if not overrides:
            raise
        raise ValueError(
            f"The preset's {what} weights ({path}) do not fit the model built with the "
            f"overrides {sorted(overrides)}: {e}"
        ) from None


# Backbones -----------------------------------------------------------------------------------
def _backbone_class_and_config(preset_dir, metadata, cls, task_name):
    config = layout.read_json(preset_dir, layout.CONFIG_FILE, "the backbone's config")
    stored = _registered_class(config, layout.CONFIG_FILE)
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
    backbone = target.from_config({**inner, **overrides})
    if load_weights and metadata.get("weights", True):
        path = os.path.join(preset_dir, layout.MODEL_WEIGHTS_FILE)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"The preset directory {preset_dir} has no {layout.MODEL_WEIGHTS_FILE} (the "
                "backbone's weights); it is incomplete."
            )
        _load_weights(backbone, path, overrides, "backbone")
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
        tokenizer.load_assets(assets)
    return preprocessor


def load_preprocessor(preset):
    """The preprocessor of a task preset, its tokenizers' vocabularies loaded.

    Example:
    >>> load_preprocessor("transformer_tiny") is None  # an architecture has none
    True
    """
    import keras

    preset_dir = resolve_preset(preset)
    read_metadata(preset_dir)
    if not os.path.isfile(os.path.join(preset_dir, layout.PREPROCESSOR_CONFIG_FILE)):
        return None
    config = _import_modules(layout.read_json(preset_dir, layout.PREPROCESSOR_CONFIG_FILE))
    return _load_assets(keras.saving.deserialize_keras_object(config), preset_dir)


def load_tokenizer(preset, slot="tokenizer"):
    """A tokenizer of a task preset (`"tokenizer"` or `"decoder_tokenizer"`), with its vocabulary.

    Example:
    >>> try:
    ...     load_tokenizer("transformer_tiny")
    ... except FileNotFoundError as e:
    ...     print("no tokenizer")
    no tokenizer
    """
    import keras

    if slot not in layout.TOKENIZER_SLOTS:
        raise ValueError(
            f"`slot` must be one of {list(layout.TOKENIZER_SLOTS)}; received {slot!r}."
        )
    preset_dir = resolve_preset(preset)
    read_metadata(preset_dir)
    config = _import_modules(layout.read_json(preset_dir, f"{slot}.json", f"the {slot}"))
    tokenizer = keras.saving.deserialize_keras_object(config)
    assets = os.path.join(preset_dir, layout.ASSETS_DIR, slot)
    if not os.path.isdir(assets):
        raise FileNotFoundError(f"The preset directory {preset_dir} has no assets/{slot}/.")
    tokenizer.load_assets(assets)
    return tokenizer


def _check_lengths(backbone, preprocessor):
    limit = getattr(backbone, "max_sequence_length", None)
    if limit is None or preprocessor is None:
        return
    for attr in ("sequence_length", "encoder_sequence_length", "decoder_sequence_length"):
        length = getattr(preprocessor, attr, None)
        if length is not None and length > limit:
            raise ValueError(
                f"The preprocessor's {attr} ({length}) exceeds the backbone's "
                f"max_sequence_length ({limit}); shorten it or pass a larger "
                "`max_sequence_length=` (only for an untrained preset)."
            )


# Tasks -------------------------------------------------------------------------------------
def _route(overrides, task_args, backbone_args, preprocessor_args, task_name):
    """Splits overrides among the task, the backbone and the preprocessor (in that order)."""
    parts = ({}, {}, {})
    for key, value in overrides.items():
        for part, accepted in zip(parts, (task_args, backbone_args, preprocessor_args)):
            if key in accepted:
                part[key] = value
                break
        else:
            raise ValueError(
                f"Unknown override {key!r} for {task_name}.from_preset; it accepts the task's "
                f"arguments {sorted(task_args)}, the backbone's {sorted(backbone_args)} and "
                f"the preprocessor's {sorted(preprocessor_args)}."
            )
    return parts


def _task_arguments(klass):
    return (_arguments(klass) | {"preprocessor"}) - {"backbone", "trainable", "dtype"}


def _load_task(cls, preset_dir, metadata, load_weights, overrides):
    import keras

    task_file = os.path.join(preset_dir, layout.TASK_CONFIG_FILE)
    if metadata.get("task") or os.path.isfile(task_file):
        config = layout.read_json(preset_dir, layout.TASK_CONFIG_FILE, "the task's config")
        stored = _registered_class(config, layout.TASK_CONFIG_FILE)
        if not issubclass(stored, cls):
            raise ValueError(
                f"The preset {preset_dir} is a {stored.__name__} preset, not a {cls.__name__} "
                f"one: load it with {stored.__name__}.from_preset. To put its backbone under "
                f"a new head: {cls.__name__}(Backbone.from_preset(...), ...)."
            )
        config = dict(config["config"])
        backbone_config = dict(config.pop("backbone"))
        preprocessor_config = config.pop("preprocessor", None)
        backbone_class = _registered_class(backbone_config, layout.TASK_CONFIG_FILE)
        backbone_inner = dict(backbone_config["config"])
        preprocessor_args = set((preprocessor_config or {}).get("config", {})) - {
            "name", "trainable", "dtype", "tokenizer", "decoder_tokenizer", "config_file"
        }
        task_over, backbone_over, preprocessor_over = _route(
            overrides, _task_arguments(stored), set(backbone_inner) | _arguments(backbone_class),
            preprocessor_args, stored.__name__,
        )
        if "preprocessor" in task_over:
            preprocessor = task_over.pop("preprocessor")
        elif preprocessor_config is not None:
            preprocessor_config = dict(preprocessor_config)
            preprocessor_config["config"] = {**preprocessor_config["config"], **preprocessor_over}
            preprocessor = _load_assets(
                keras.saving.deserialize_keras_object(preprocessor_config), preset_dir
            )
        else:
            preprocessor = None
        backbone = _build_backbone(
            backbone_class, backbone_inner, backbone_over, preset_dir, metadata, load_weights
        )
        config.update(task_over)
        task = stored.from_config({**config, "backbone": backbone, "preprocessor": preprocessor})
        head = os.path.join(preset_dir, layout.TASK_WEIGHTS_FILE)
        if load_weights and os.path.isfile(head):
            _load_head_weights(task, head, task_over)
    else:
        task = _task_from_backbone_preset(cls, preset_dir, metadata, load_weights, overrides)
    _check_lengths(task.backbone, task.preprocessor)
    if not getattr(task, "compiled", False):
        task.compile()
    return task


def _load_head_weights(task, path, task_overrides):
    import keras

    changed = sorted(set(task_overrides) - {"name"})
    skip = head_weights_to_skip(task)
    if not changed:
        keras.saving.load_weights(task, path, objects_to_skip=skip)
        return
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Keras' own notes on the mismatch; ours follows.
            keras.saving.load_weights(task, path, objects_to_skip=skip)
    except ValueError:
        warnings.warn(
            f"{type(task).__name__}.from_preset: the head's saved weights do not fit the head "
            f"built with the overrides {changed}; it keeps its fresh initialisation.",
            stacklevel=5,
        )


def _task_from_backbone_preset(cls, preset_dir, metadata, load_weights, overrides):
    name = cls.__name__
    if name in ("Task", "GenerativeTask"):
        raise ValueError(
            f"The preset {preset_dir} holds only a backbone; load it with a task class, e.g. "
            "TextClassifier.from_preset(preset, num_classes=2)."
        )
    tasks = metadata.get("tasks")
    if tasks is not None and not {k.__name__ for k in cls.__mro__} & set(tasks):
        raise ValueError(
            f"The preset {preset_dir} cannot make a {name}; it is meant for {', '.join(tasks)}."
        )
    target, inner = _backbone_class_and_config(preset_dir, metadata, None, name)
    task_over, backbone_over, _ = _route(
        overrides, _task_arguments(cls), set(inner) | _arguments(target), set(), name
    )
    preprocessor = task_over.pop("preprocessor", None)
    if preprocessor is None and "preprocessor" not in overrides:
        if os.path.isfile(os.path.join(preset_dir, layout.PREPROCESSOR_CONFIG_FILE)):
            preprocessor = load_preprocessor(preset_dir)
    if preprocessor is not None and not metadata.get("weights", True):
        # Untrained: size the embeddings for the preprocessor's vocabularies.
        for key, slot in (("vocabulary_size", "tokenizer"),
                          ("decoder_vocabulary_size", "decoder_tokenizer")):
            tokenizer = getattr(preprocessor, slot, None)
            if key in _arguments(target) and key not in backbone_over and tokenizer is not None:
                backbone_over[key] = tokenizer.vocabulary_size()
    required = [p.name for p in inspect.signature(cls.__init__).parameters.values()
                if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                and p.name not in ("self", "backbone", "preprocessor", *task_over)]
    if required:
        raise ValueError(
            f"{name}.from_preset on the backbone-only preset {preset_dir} needs "
            f"{', '.join(f'`{r}=`' for r in required)} (e.g. `num_classes=2`)."
        )
    backbone = _build_backbone(target, inner, backbone_over, preset_dir, metadata, load_weights)
    return cls(backbone=backbone, preprocessor=preprocessor, **task_over)


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
        return _load_task(cls, preset_dir, metadata, load_weights, overrides)
    if isinstance(cls, type) and issubclass(cls, Backbone):
        if "preprocessor" in overrides:
            raise ValueError("A backbone has no preprocessor; `preprocessor=` is for tasks.")
        target, inner = _backbone_class_and_config(preset_dir, metadata, cls, None)
        return _build_backbone(target, inner, overrides, preset_dir, metadata, load_weights)
    raise ValueError(
        f"`cls` must be a keras_unitscale Backbone or Task class; received {cls!r:.80}."
    )
