"""`UnitScaledModel`: the `keras.Model` every backbone and task derives from."""

import keras

DEFAULT_LEARNING_RATE = 0.5
"""The default base rate of `keras_unitscale.optimizers.AdamW` in `UnitScaledModel.compile()`.

Each weight steps at this rate times its u-muP multiplier (`fan_in ** -0.5` for a hidden
weight, `width ** -0.5` for an embedding table, 1 for biases, norms and the readout; see
`keras_unitscale.optimizers.rules`), so the rate is far larger than plain Keras' 1e-3. On a
character LM (`benchmarks/lr_transfer.py`, docs/umup.md) the best base rate with a warm-up was
2^0 or 2^1 at every width from 64 to 1024 and 2^0 to 2^2 at depths 2 to 16; the default sits
one grid point below 2^0 because `compile()` adds no warm-up.
"""


@keras.saving.register_keras_serializable(package="keras_unitscale")
class UnitScaledModel(keras.Model):
    """A `keras.Model` with defaults that suit unit-scaled networks.

    Works as a functional model (`UnitScaledModel(inputs, outputs)`) and as a base class for
    subclassed models. Differences from `keras.Model`:

    - `compile()` defaults to u-muP's `keras_unitscale.optimizers.AdamW(learning_rate=0.5,
      weight_decay=0)` (per-weight learning rates; see `DEFAULT_LEARNING_RATE`), to our
      unit-scaled `SparseCategoricalCrossentropy` when no
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
            optimizer: an optimizer or its name (a name gives Keras' own optimizer, with one
                rate for every weight); default `keras_unitscale.optimizers.AdamW` with
                `learning_rate`, u-muP's per-weight rates.
            loss: default `keras_unitscale.losses.SparseCategoricalCrossentropy()`, with
                `from_logits=False` when the last layer is a softmax readout.
            learning_rate: the default optimizer's base rate (default 0.5), a number or a
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
            from keras_unitscale.optimizers import AdamW

            optimizer = AdamW(learning_rate=lr, weight_decay=0.0)
        elif isinstance(optimizer, str):
            try:
                optimizer = keras.optimizers.get(
                    {"class_name": optimizer, "config": {"learning_rate": lr}})
            except (ValueError, TypeError) as error:
                raise ValueError(
                    f"`optimizer` must be an optimizer or the name of one of Keras' optimizers "
                    f"(such as 'adamw' or 'sgd'); received optimizer={optimizer!r:.60}."
                ) from error
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
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if getattr(self, "optimizer", None) is not None and self.built:
            self.optimizer.build(self.trainable_variables)

    def get_config(self):
        # Keras' config, plus the FP8 settings of `keras_unitscale.precision` by layer path:
        # a block (MLP, transformer block) rebuilds its sublayers from its own arguments.
        from keras_unitscale import precision

        config = super().get_config()
        fp8 = precision.fp8_record(self)
        if fp8:
            config = dict(config, **{precision.RECORD_KEY: fp8})
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        from keras_unitscale import precision

        config = dict(config)
        fp8 = config.pop(precision.RECORD_KEY, None)
        model = super().from_config(config, custom_objects=custom_objects)
        return precision.restore_fp8(model, fp8)

    def scale_report(self, x, y=None, **kwargs):
        """Forward and backward scales of every layer on one batch (a `ScaleTable`)."""
        from keras_unitscale.analysis import track_scales

        return track_scales(self, x, y, **kwargs)

    def quantize(self, mode=None, config=None, filters=None, **kwargs):
        """Keras' `quantize` (`"int8"`, `"int4"`): quantises the kernels of the layers that
        have any (dense, embedding, attention, LSTM/GRU and readout kernels), leaving
        preprocessors, norms and dropouts alone. See `docs/kbit.md`."""
        from keras_unitscale.quantization.modes import quantize_model

        quantize_model(self, mode, config=config, filters=filters, **kwargs)
