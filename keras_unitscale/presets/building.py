"""What loading a preset is made of: resolving its name, reading its metadata and configs,
building its backbone, preprocessor and tokenizers, loading weights and vocabularies.

`task_loading` builds a task on top of these and `loading.load_preset` is the entry point.
Nothing here names a model class: a task's pairing (`architecture_backbones`) is read from
the task class, and classes are found by their registered Keras names.
"""

import importlib
import inspect
import os

from keras_unitscale.presets import layout, registry
from keras_unitscale._tasks import registered_tasks
from keras_unitscale.presets.saving import tokenizers_of

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
    """The `metadata.json` of a preset (a name or a path), after checking its format version
    and its files against the checksums it records (`layout.verify_files`).

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
    layout.verify_files(preset_dir, metadata)  # before any other file is read
    return metadata


def import_modules(config):
    """Imports the keras_unitscale modules a serialised config names, so that their classes
    are registered before Keras looks them up (only this package's own modules)."""
    if isinstance(config, dict):
        module = config.get("module")
        if isinstance(module, str) and module.split(".")[0] == "keras_unitscale":
            importlib.import_module(module)
        for value in config.values():
            import_modules(value)
    elif isinstance(config, list):
        for value in config:
            import_modules(value)
    return config


def registered_class(config, file_name):
    import keras

    import_modules(config)
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


def constructor_arguments(klass):
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
def _architecture_families():
    """Sets of backbone classes that an untrained size may be built as, one another: those a
    task's `architecture_backbones` relates (a transformer encoder, decoder and
    encoder-decoder of one size), joined through any class they share."""
    families = []
    for task in registered_tasks().values():
        for stored, (built, _) in task.architecture_backbones.items():
            joined = {stored, built}
            for family in [f for f in families if f & joined]:
                families.remove(family)
                joined |= family
            families.append(joined)
    return families


def backbone_class_and_config(preset_dir, metadata, cls, task_cls):
    """`(class, config)` of the backbone to build from the preset's `config.json`: as stored,
    or for an untrained architecture preset, what `task_cls.architecture_backbones` makes of
    it (with `task_cls` None, `cls` itself when a task relates the two classes)."""
    config = layout.read_object(preset_dir, layout.CONFIG_FILE, "the backbone's config")
    stored = registered_class(config, os.path.join(preset_dir, layout.CONFIG_FILE))
    inner = dict(config["config"])
    target, extras = stored, {}
    untrained = not metadata.get("weights", True)
    if untrained and task_cls is not None:
        target, extras = task_cls.architecture_backbones.get(stored, (stored, {}))
    elif cls is not None and not issubclass(stored, cls):
        related = any({stored, cls} <= family for family in _architecture_families())
        if not (untrained and related):
            raise ValueError(
                f"The preset {preset_dir} holds a {stored.__name__}, not a {cls.__name__}; load "
                f"it with {stored.__name__}.from_preset (or Backbone.from_preset)."
            )
        target = cls  # An untrained transformer size, built as another transformer kind.
    if target is not stored:
        inner.pop("name", None)
        accepted = constructor_arguments(target)
        inner = {k: v for k, v in inner.items() if k in accepted}
    inner.update(extras)
    return target, inner


def registered_backbone(name):
    """The backbone class registered as `keras_unitscale>name`.

    >>> registered_backbone("LSTMBackbone").__name__
    'LSTMBackbone'
    """
    import keras

    # `import keras_unitscale` (which importing this module implies) registers them.
    return keras.saving.get_registered_object(f"keras_unitscale>{name}")


def build_backbone(target, inner, overrides, preset_dir, metadata, load_weights):
    import keras

    accepted = set(inner) | constructor_arguments(target)
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
def load_assets(preprocessor, preset_dir):
    for slot, tokenizer in tokenizers_of(preprocessor):
        assets = os.path.join(preset_dir, layout.ASSETS_DIR, slot)
        if not os.path.isdir(assets):
            raise FileNotFoundError(
                f"The preset directory {preset_dir} has no {layout.ASSETS_DIR}/{slot}/ (the "
                f"{slot}'s vocabulary); it is incomplete."
            )
        load_tokenizer_assets(tokenizer, assets, slot)
    return preprocessor


def load_tokenizer_assets(tokenizer, assets, slot):
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
    config = import_modules(
        layout.read_object(preset_dir, layout.PREPROCESSOR_CONFIG_FILE, what))
    path = os.path.join(preset_dir, layout.PREPROCESSOR_CONFIG_FILE)
    return load_assets(deserialize(config, path, what), preset_dir)


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
    config = import_modules(layout.read_object(preset_dir, f"{slot}.json", f"the {slot}"))
    tokenizer = deserialize(config, os.path.join(preset_dir, f"{slot}.json"), f"the {slot}")
    assets = os.path.join(preset_dir, layout.ASSETS_DIR, slot)
    if not os.path.isdir(assets):
        raise FileNotFoundError(f"The preset directory {preset_dir} has no assets/{slot}/.")
    load_tokenizer_assets(tokenizer, assets, slot)
    return tokenizer
