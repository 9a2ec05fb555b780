"""`PresetMixin`: `from_preset` and `save_to_preset` for `Backbone` and `Task`."""

from keras_unitscale.presets.loading import load_preset
from keras_unitscale.presets.saving import save_preset


class PresetMixin:
    """Adds `cls.from_preset(preset, **overrides)` and `model.save_to_preset(path)`.

    A base class of `keras_unitscale.models.Backbone` and `Task`; see `load_preset` and
    `save_preset` for the details and `docs/presets.md` for the directory layout.

    Example:
    >>> import keras_unitscale as ku
    >>> issubclass(ku.models.Backbone, PresetMixin), issubclass(ku.models.Task, PresetMixin)
    (True, True)
    """

    @classmethod
    def from_preset(cls, preset, load_weights=True, **overrides):
        """Builds this class from a built-in preset name or a preset directory path.

        Args:
            preset: a name from `keras_unitscale.list_presets()` or a directory path.
            load_weights: load the saved weights (else they are freshly initialised).
            **overrides: constructor arguments replacing the saved ones: the task's first
                (`num_classes`, `preprocessor`, ...), then the backbone's (`dtype`,
                `dropout`, ...), then the preprocessor's (`sequence_length`, ...).

        Example:
        >>> import keras_unitscale as ku
        >>> backbone = ku.models.Backbone.from_preset("lstm_small", vocabulary_size=100)
        >>> type(backbone).__name__, backbone.hidden_dim
        ('LSTMBackbone', 256)
        """
        return load_preset(cls, preset, load_weights=load_weights, **overrides)

    def save_to_preset(self, preset_dir, overwrite=False):
        """Saves this model (and a task's preprocessor) as a preset directory.

        Args:
            preset_dir: the directory, created if needed.
            overwrite: replace the preset files of a non-empty directory (other files stay).

        Example:
        >>> import os, tempfile
        >>> import keras_unitscale as ku
        >>> backbone = ku.models.LSTMBackbone(vocabulary_size=20, hidden_dim=4)
        >>> path = os.path.join(tempfile.mkdtemp(), "my_backbone")
        >>> backbone.save_to_preset(path)
        >>> ku.models.Backbone.from_preset(path).count_params() == backbone.count_params()
        True
        """
        save_preset(self, preset_dir, overwrite=overwrite)
