"""`UnitScaledModel`: the `keras.Model` every backbone and task derives from."""

import keras

DEFAULT_LEARNING_RATE = 1e-2
"""Adam's default step for unit-scaled models.

Unit-scaled weights have std 1 where a standard model's have about `fan_in ** -0.5`, and Adam's
update size does not depend on the gradient's scale, so the same relative change of a weight
needs a step `sqrt(fan_in)` times larger than a standard model's usual 1e-3. The value also
transfers across widths (u-muP): the scales, not the learning rate, absorb the width.
"""


@keras.saving.register_keras_serializable(package="keras_unitscale")
class UnitScaledModel(keras.Model):
    """A `keras.Model` with defaults that suit unit-scaled networks.

    Works as a functional model (`UnitScaledModel(inputs, outputs)`) and as a base class for
    subclassed models. Differences from `keras.Model`:

    - `compile()` defaults to `AdamW(learning_rate=1e-2, weight_decay=0)` (see
      `DEFAULT_LEARNING_RATE`), to our unit-scaled `SparseCategoricalCrossentropy` when no
      loss is given, and never wraps the optimizer in a `LossScaleOptimizer` under
      `mixed_float16`: a unit-scaled model's gradients already sit in FP16's range.
    - `scale_report(x, y=None)` returns the forward and backward std (and range statistics) of
      every layer, see `keras_unitscale.analysis.track_scales`.

    Example:
    >>> import keras, numpy as np
    >>> import keras_unitscale as ku
    >>> inputs = keras.Input((16,))
    >>> outputs = ku.layers.Dense(3, readout=True)(ku.layers.Dense(32, activation="gelu")(inputs))
    >>> model = ku.models.UnitScaledModel(inputs, outputs)
    >>> model.compile(metrics=["accuracy"])
    >>> x = np.random.default_rng(0).standard_normal((64, 16)).astype("float32")
    >>> y = (x[:, 0] > 0).astype("int32")
    >>> _ = model.fit(x, y, epochs=2, verbose=0)
    >>> [row["direction"] for row in model.scale_report(x[:8], y[:8])][:2]
    ['forward', 'backward']
    """

    def compile(
        self,
        optimizer=None,
        loss=None,
        learning_rate=None,
        auto_scale_loss=False,
        **kwargs,
    ):
        """Configures the model for training, with unit-scaling defaults.

        Args:
            optimizer: an optimizer or its name; default `AdamW` with `learning_rate`.
            loss: default `keras_unitscale.losses.SparseCategoricalCrossentropy()`, with
                `from_logits=False` when the last layer is a softmax readout.
            learning_rate: the default optimizer's step (default 1e-2), a number or a
                `keras.optimizers.schedules.LearningRateSchedule`; an error when an optimizer
                instance is also given.
            auto_scale_loss: Keras' automatic loss scaling under `mixed_float16`; off, as
                unit-scaled models do not need it.
            **kwargs: the rest of `keras.Model.compile`'s arguments.
        """
        if learning_rate is not None and optimizer is not None and not isinstance(optimizer, str):
            raise ValueError(
                "`learning_rate` applies to the default optimizer only; set the learning rate "
                f"on the optimizer you pass instead (received optimizer={optimizer!r})."
            )
        if learning_rate is None:
            lr = DEFAULT_LEARNING_RATE
        elif isinstance(learning_rate, keras.optimizers.schedules.LearningRateSchedule):
            lr = learning_rate
        elif isinstance(learning_rate, (int, float)) and not isinstance(learning_rate, bool) and (
            learning_rate > 0
        ):
            lr = float(learning_rate)
        else:
            raise ValueError(
                "`learning_rate` must be a positive number or a keras.optimizers.schedules."
                f"LearningRateSchedule; received {learning_rate!r:.80}."
            )
        if optimizer is None:
            optimizer = keras.optimizers.AdamW(learning_rate=lr, weight_decay=0.0)
        elif isinstance(optimizer, str):
            optimizer = keras.optimizers.get({"class_name": optimizer, "config": {"learning_rate": lr}})
        if loss is None:
            from keras_unitscale.losses import SparseCategoricalCrossentropy

            # A softmax readout outputs probabilities, not logits.
            last = self.layers[-1] if self.layers else None
            probabilities = getattr(last, "activation", None) == "softmax"
            loss = SparseCategoricalCrossentropy(from_logits=not probabilities)
        super().compile(optimizer=optimizer, loss=loss, auto_scale_loss=auto_scale_loss, **kwargs)

    def compile_from_config(self, config):
        """Recompiles a loaded model with the optimizer, loss and metrics it was saved with.

        Keras skips this for models whose `compile()` is overridden; ours only changes
        defaults, so the saved (fully specified) arguments can be passed straight back.
        """
        from keras.src.saving import serialization_lib

        config = serialization_lib.deserialize_keras_object(config)
        self.compile(**config)
        if getattr(self, "optimizer", None) is not None and self.built:
            self.optimizer.build(self.trainable_variables)

    def scale_report(self, x, y=None, **kwargs):
        """Forward and backward scales of every layer on one batch (a `ScaleTable`)."""
        from keras_unitscale.analysis import track_scales

        return track_scales(self, x, y, **kwargs)
