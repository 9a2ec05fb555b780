"""Building a task from a preset: `task.json` with overrides routed to the task, the backbone
or the preprocessor; the head's own weights; or a new task on a backbone-only preset."""

import inspect
import os
import warnings

from keras_unitscale.presets import layout
from keras_unitscale.presets.building import (
    backbone_class_and_config,
    build_backbone,
    constructor_arguments,
    deserialize,
    from_config,
    load_assets,
    load_preprocessor,
    load_weights_file,
    registered_class,
)
from keras_unitscale.presets.saving import head_weights_to_skip


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
    return (constructor_arguments(klass) | {"preprocessor"}) - {"backbone", "trainable", "dtype"}


def load_task(cls, preset_dir, metadata, load_weights, overrides):
    """Builds the task class `cls` from a resolved preset directory (see `load_preset`).

    Example:
    >>> from keras_unitscale.models.text_classifier import TextClassifier
    >>> from keras_unitscale.presets.building import read_metadata, resolve_preset
    >>> path = resolve_preset("lstm_small")
    >>> task = load_task(TextClassifier, path, read_metadata(path), True,
    ...                  {"num_classes": 3, "vocabulary_size": 30, "hidden_dim": 8})
    >>> type(task.backbone).__name__, task.num_classes
    ('LSTMBackbone', 3)
    """
    task_file = os.path.join(preset_dir, layout.TASK_CONFIG_FILE)
    what = "the task's config"
    if metadata.get("task") or os.path.isfile(task_file):
        config = layout.read_object(preset_dir, layout.TASK_CONFIG_FILE, what)
        stored = registered_class(config, task_file)
        if not issubclass(stored, cls):
            raise ValueError(
                f"The preset {preset_dir} is a {stored.__name__} preset, not a {cls.__name__} "
                f"one: load it with {stored.__name__}.from_preset. To put its backbone under "
                f"a new head: {cls.__name__}(Backbone.from_preset(...), ...)."
            )
        config = dict(config["config"])
        backbone_config = dict(layout.check_object(config.pop("backbone", None), task_file,
                                                   what, "backbone"))
        preprocessor_config = config.pop("preprocessor", None)
        if preprocessor_config is not None:
            layout.check_object(preprocessor_config, task_file, what, "preprocessor")
        backbone_class = registered_class(backbone_config, task_file)
        backbone_inner = dict(backbone_config["config"])
        preprocessor_args = set((preprocessor_config or {}).get("config", {})) - {
            "name", "trainable", "dtype", "tokenizer", "decoder_tokenizer", "config_file"
        }
        task_over, backbone_over, preprocessor_over = _route(
            overrides, _task_arguments(stored),
            set(backbone_inner) | constructor_arguments(backbone_class),
            preprocessor_args, stored.__name__,
        )
        if "preprocessor" in task_over:
            preprocessor = task_over.pop("preprocessor")
        elif preprocessor_config is not None:
            preprocessor_config = dict(preprocessor_config)
            preprocessor_config["config"] = {**preprocessor_config["config"], **preprocessor_over}
            preprocessor = load_assets(
                deserialize(preprocessor_config, task_file, what), preset_dir
            )
        else:
            preprocessor = None
        backbone = build_backbone(
            backbone_class, backbone_inner, backbone_over, preset_dir, metadata, load_weights
        )
        if "label_names" in _task_arguments(stored) and config.get("label_names") is None and (
            not {"label_names", "num_classes"} & set(task_over)
        ):
            # Presets saved before the task kept its label names have them in the metadata.
            names = metadata.get("label_names")
            if names and len(names) == config.get("num_classes", len(names)):
                config["label_names"] = list(names)
        config.update(task_over)
        task = from_config(
            stored, {**config, "backbone": backbone, "preprocessor": preprocessor}, task_file, what
        )
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
        load_weights_file(task, path, "the head's weights", objects_to_skip=skip)
        return
    layout.check_weights_file(path, "the head's weights")  # corrupt: an error, not a warning
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
    if cls.preprocessor_cls is None:  # a base class: it declares no task of its own
        raise ValueError(
            f"The preset {preset_dir} holds only a backbone; load it with a task class, e.g. "
            "TextClassifier.from_preset(preset, num_classes=2)."
        )
    tasks = metadata.get("tasks")
    if tasks is not None and not {k.__name__ for k in cls.__mro__} & set(tasks):
        raise ValueError(
            f"The preset {preset_dir} cannot make a {name}; it is meant for {', '.join(tasks)}."
        )
    target, inner = backbone_class_and_config(preset_dir, metadata, None, cls)
    task_over, backbone_over, _ = _route(
        overrides, _task_arguments(cls), set(inner) | constructor_arguments(target), set(), name
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
            if (key in constructor_arguments(target) and key not in backbone_over
                    and tokenizer is not None):
                backbone_over[key] = tokenizer.vocabulary_size()
    required = [p.name for p in inspect.signature(cls.__init__).parameters.values()
                if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                and p.name not in ("self", "backbone", "preprocessor", *task_over)]
    if required:
        raise ValueError(
            f"{name}.from_preset on the backbone-only preset {preset_dir} needs "
            f"{', '.join(f'`{r}=`' for r in required)} (e.g. `num_classes=2`)."
        )
    backbone = build_backbone(target, inner, backbone_over, preset_dir, metadata, load_weights)
    return cls(backbone=backbone, preprocessor=preprocessor, **task_over)
