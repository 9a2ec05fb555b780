"""`load_preset`: a backbone or a task from a built-in preset name or a directory path.

The entry point of loading: a task class (one that declares its `backbone_cls`) is built by
`task_loading`, a backbone class here, both from the parts in `building` (re-exported here,
their old home).
"""

from keras_unitscale.presets.building import (  # noqa: F401 (re-exported: their old home)
    backbone_class_and_config,
    build_backbone,
    deserialize,
    from_config,
    load_preprocessor,
    load_tokenizer,
    load_weights_file,
    read_metadata,
    registered_backbone,
    resolve_preset,
)
from keras_unitscale.presets.task_loading import load_task


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
    if not (isinstance(cls, type) and hasattr(cls, "save_to_preset")):  # PresetMixin's
        raise ValueError(
            f"`cls` must be a keras_unitscale Backbone or Task class; received {cls!r:.80}."
        )
    if not isinstance(load_weights, bool):
        raise ValueError(f"`load_weights` must be True or False; received {load_weights!r:.80}.")
    preset_dir = resolve_preset(preset)
    metadata = read_metadata(preset_dir)
    if hasattr(cls, "backbone_cls"):  # a task declares its backbones; a backbone does not
        return load_task(cls, preset_dir, metadata, load_weights, overrides)
    if "preprocessor" in overrides:
        raise ValueError("A backbone has no preprocessor; `preprocessor=` is for tasks.")
    target, inner = backbone_class_and_config(preset_dir, metadata, cls, None)
    return build_backbone(target, inner, overrides, preset_dir, metadata, load_weights)

