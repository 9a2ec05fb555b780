"""keras_unitscale.presets: save and load models as preset directories; the built-in ones.

- `list_presets(task=None)`: the built-in presets, `{name: description}`.
- `load_preset(cls, preset, **overrides)`, `save_preset(model, path)`: what
  `Backbone.from_preset` / `Task.from_preset` and `save_to_preset` call.
- `load_preprocessor(preset)`, `load_tokenizer(preset)`, `read_metadata(preset)`.
- `PresetMixin`: the `from_preset` / `save_to_preset` methods of `Backbone` and `Task`.

A preset is a directory in KerasHub's layout (`config.json`, `model.weights.h5`,
`task.json`, `task.weights.h5`, `preprocessor.json`, `tokenizer.json`, `assets/`,
`metadata.json`); see `keras_unitscale.presets.layout` and `docs/presets.md`.
"""

from keras_unitscale.presets.layout import FORMAT_VERSION
from keras_unitscale.presets.loading import (
    load_preprocessor,
    load_preset,
    load_tokenizer,
    read_metadata,
    resolve_preset,
)
from keras_unitscale.presets.mixin import PresetMixin
from keras_unitscale.presets.registry import BUILTIN_PRESETS, list_presets
from keras_unitscale.presets.saving import save_preset

__all__ = [
    "BUILTIN_PRESETS",
    "FORMAT_VERSION",
    "PresetMixin",
    "list_presets",
    "load_preprocessor",
    "load_preset",
    "load_tokenizer",
    "read_metadata",
    "resolve_preset",
    "save_preset",
]
