"""Unit-scaled `Embedding`."""

import keras
import numpy as np
from keras import ops

from keras_unitscale import ops as uops
from keras_unitscale.layers import _keras_arguments, _weights
from keras_unitscale.layers._quantize import QuantizableKernels
from keras_unitscale.ops.formats import attach_fp8, fp8_from_config, fp8_to_config
from keras_unitscale.backend import concrete_value
from keras_unitscale.layers._validation import positive_int


@keras.saving.register_keras_serializable(package="keras_unitscale")
class Embedding(QuantizableKernels, keras.layers.Layer):
    """Token embedding with unit scaling: drop-in for `keras.layers.Embedding`.

    The table is N(0, 1) so looked-up vectors are unit; its gradient is scaled by
    `sqrt(input_dim / num_tokens)` so the table gradient is unit too.

    Args:
        input_dim: vocabulary size.
        output_dim: embedding size.
        mask_zero: if true, id 0 is padding and a Keras mask is produced.
        embeddings_initializer: default N(0, 1); one that does not draw unit-variance
            vectors (Keras' `uniform`, std 0.03) starts the layer off unit scale, and is
            warned about.
        embeddings_regularizer, activity_regularizer, embeddings_constraint: as in Keras.
        weights: as in Keras, a starting table `[input_dim, output_dim]` (pretrained
            vectors, say); one far from unit RMS (most pretrained tables are) is warned about,
            as it starts the layer off unit scale.
        **kwargs: `name`, `dtype`, ... Keras' `lora_rank`, `lora_alpha` and
            `quantization_config` are accepted at their default `None` only (no LoRA
            adapters; quantise with `quantize()`), refused otherwise with the reason.

    Ids outside `[0, input_dim)` raise a `ValueError` when the layer runs eagerly. Inside a
    compiled function (`jit`, `tf.function`, XLA) they cannot raise: each gets a row of NaN,
    on every backend (Keras' own layer gives NaN on JAX, wraps negative ids to the end of the
    table, and on TensorFlow fails or, under XLA, clamps silently), so a loss or an output
    shows it. The tasks and backbones check ids before anything is compiled (`fit`,
    `evaluate`, `predict`, `generate`, also batch by batch from a `tf.data` pipeline:
    `keras_unitscale.models.task_inputs.checked_inputs`).

    Example:
    >>> import numpy as np
    >>> import keras_unitscale as ku
    >>> layer = ku.layers.Embedding(1000, 64, mask_zero=True)
    >>> ids = np.array([[5, 7, 0]])
    >>> tuple(layer(ids).shape), np.asarray(layer.compute_mask(ids)).tolist()
    ((1, 3, 64), [[True, True, False]])
    """

    def __init__(
        self,
        input_dim,
        output_dim,
        mask_zero=False,
        embeddings_initializer=None,
        embeddings_regularizer=None,
        embeddings_constraint=None,
        **kwargs,
    ):
        fp8 = kwargs.pop("fp8", None)  # a saved FP8 setting (keras_unitscale.precision)
        weights = kwargs.pop("weights", None)
        _keras_arguments.refuse(kwargs, "Embedding", {
            "lora_rank": _keras_arguments.LORA,
            "lora_alpha": _keras_arguments.LORA,
            "quantization_config": _keras_arguments.QUANTIZATION_CONFIG,
        })
        super().__init__(**kwargs)
        self.embeddings_regularizer = _weights.regularizer(
            embeddings_regularizer, "embeddings_regularizer"
        )
        self.embeddings_constraint = _weights.constraint(
            embeddings_constraint, "embeddings_constraint"
        )
        self._user_initializer = embeddings_initializer is not None
        self.input_dim = positive_int(input_dim, "input_dim")
        self.output_dim = positive_int(output_dim, "output_dim")
        self.mask_zero = bool(mask_zero)
        self.embeddings_initializer = keras.initializers.get(
            embeddings_initializer or keras.initializers.RandomNormal(stddev=1.0)
        )
        self.supports_masking = self.mask_zero
        # A gather, not a matmul: kept for a uniform FP8 switch, unused.
        attach_fp8(self, fp8_from_config(fp8))
        if weights is not None:  # as Keras: build now and start from the given table
            self.build()
            if not (isinstance(weights, list) and len(weights) == 1):
                weights = [weights]
            self.set_weights(weights)
            _weights.warn_if_not_unit(self.embeddings, "weights", self)

    def build(self, input_shape=None):
        self.embeddings = self.add_kernel(
            "embeddings",
            (self.input_dim, self.output_dim),
            channel_axis=0,
            initializer=self.embeddings_initializer,
            regularizer=self.embeddings_regularizer,
            constraint=self.embeddings_constraint,
        )
        _weights.declare(self.embeddings, "embedding", self.output_dim)
        if self._user_initializer and self.quantization_mode is None:
            _weights.warn_if_not_unit(self.embeddings, "embeddings_initializer", self)

    def _check_ids(self, ids):
        dtype = keras.backend.standardize_dtype(ids.dtype)
        if "int" not in dtype:
            raise ValueError(
                f"`inputs` to Embedding must be integer token ids; received dtype {dtype}."
            )
        values = concrete_value(ids)
        if values is not None and values.size:
            lo, hi = int(np.min(values)), int(np.max(values))
            if lo < 0 or hi >= self.input_dim:
                raise ValueError(
                    f"`inputs` ids must be in [0, {self.input_dim}) (input_dim="
                    f"{self.input_dim}); received ids in [{lo}, {hi}]."
                )

    def call(self, inputs):
        inputs = ops.convert_to_tensor(inputs)
        self._check_ids(inputs)
        # Traced ids cannot raise: one outside the table gets a row of NaN on every backend
        # (JAX's gather does so for ids >= input_dim, but wraps negative ones; TensorFlow
        # fails, or under XLA clamps silently), so that the loss shows it.
        ids = ops.cast(inputs, "int32")
        inside = ops.logical_and(ops.greater_equal(ids, 0), ops.less(ids, self.input_dim))
        ids = ops.where(inside, ids, 0)
        if self.quantization_mode is not None:  # inference: dequantise the rows looked up
            rows = self.kernel_rows("embeddings", ids)
        else:
            rows = uops.embedding(ids, self.embeddings)
        return ops.where(ops.expand_dims(inside, -1), rows, ops.cast(np.nan, rows.dtype))

    def compute_mask(self, inputs, mask=None):
        if not self.mask_zero:
            return None
        return ops.not_equal(inputs, 0)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (self.output_dim,)

    def get_config(self):
        config = super().get_config()
        config.update(
            input_dim=self.input_dim,
            output_dim=self.output_dim,
            mask_zero=self.mask_zero,
            embeddings_initializer=keras.initializers.serialize(self.embeddings_initializer),
        )
        if self.fp8 is not None:
            config["fp8"] = fp8_to_config(self.fp8)
        return _weights.serialize(
            config,
            embeddings_regularizer=self.embeddings_regularizer,
            activity_regularizer=self.activity_regularizer,
            embeddings_constraint=self.embeddings_constraint,
        )
