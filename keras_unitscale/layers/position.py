"""Position information: learned and sinusoidal embeddings, rotary embeddings, and token +
position embeddings. The scale rules are in `keras_unitscale.ops.position`."""

import keras
import numpy as np
from keras import ops

from keras_unitscale import ops as uops
from keras_unitscale._validation import length_at_most, positive_int, static_dim
from keras_unitscale.backend import concrete_value
from keras_unitscale.layers import _weights
from keras_unitscale.layers._quantize import QuantizableKernels
from keras_unitscale.layers.embedding import Embedding


def _wavelength(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 1:
        raise ValueError(f"`max_wavelength` must be a number > 1; received {value!r}.")
    return float(value)


def _check_inputs(shape, rank=3):
    if len(shape) != rank or shape[-1] is None:
        raise ValueError(
            f"`inputs` must have shape [batch, length, dim] with a known dim; received shape "
            f"{tuple(shape)}."
        )


@keras.saving.register_keras_serializable(package="keras_unitscale")
class PositionEmbedding(QuantizableKernels, keras.layers.Layer):
    """Learned position embedding (N(0, 1) table, unit-scaled table gradient).

    Returns the embeddings of positions `start_index ... start_index + length - 1`,
    broadcast to the shape of `inputs [batch, length, dim]`; add them to the token
    embeddings (`keras_unitscale.ops.add` keeps the sum unit).

    Args:
        sequence_length: the largest number of positions.
        initializer: the table's initializer; N(0, 1) by default.

    Example:
    >>> import numpy as np
    >>> import keras_unitscale as ku
    >>> layer = ku.layers.PositionEmbedding(sequence_length=16)
    >>> tuple(layer(np.zeros((2, 10, 8), "float32")).shape)
    (2, 10, 8)
    """

    def __init__(self, sequence_length, initializer=None, **kwargs):
        super().__init__(**kwargs)
        self.sequence_length = positive_int(sequence_length, "sequence_length")
        self.initializer = keras.initializers.get(
            initializer or keras.initializers.RandomNormal(stddev=1.0)
        )
        self.supports_masking = True

    def build(self, inputs_shape):
        _check_inputs(inputs_shape)
        if inputs_shape[1] is not None and inputs_shape[1] > self.sequence_length:
            raise ValueError(
                f"`inputs` length {inputs_shape[1]} exceeds `sequence_length` "
                f"{self.sequence_length}."
            )
        self.position_embeddings = _weights.declare(self.add_kernel(
            "embeddings",
            (self.sequence_length, int(inputs_shape[-1])),
            channel_axis=0,
            attribute="position_embeddings",
            initializer=self.initializer,
        ), "embedding", int(inputs_shape[-1]))

    def call(self, inputs, start_index=0):
        self._check_positions(inputs.shape[1], start_index)
        table = self.kernel_value("position_embeddings")
        return uops.position_embedding(table, inputs, start_index)

    def _check_positions(self, length, start_index):
        """Positions past the table cannot be looked up (a backend error, or on some
        backends the last row silently): the static length is checked under `jit` too; a
        `start_index` only where it is concrete (eager), as it is traced when decoding."""
        length_at_most(length, self.sequence_length, "inputs", "`sequence_length`")
        start = start_index if isinstance(start_index, int) else concrete_value(start_index)
        length = static_dim(length)
        if start is None or length is None:
            return
        start = int(np.asarray(start).reshape(()))
        if start < 0 or start + int(length) > self.sequence_length:
            raise ValueError(
                f"`start_index` (the `cache_update_index` when decoding) must be in [0, "
                f"{self.sequence_length - int(length)}] for {int(length)} positions within "
                f"`sequence_length` ({self.sequence_length}); received {start}."
            )

    def compute_output_shape(self, inputs_shape):
        return tuple(inputs_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            sequence_length=self.sequence_length,
            initializer=keras.initializers.serialize(self.initializer),
        )
        return config


@keras.saving.register_keras_serializable(package="keras_unitscale")
class SinePositionEncoding(keras.layers.Layer):
    """Fixed sinusoidal position encoding with unit RMS (`sqrt(2) * [sin, cos]`).

    Returns the encoding of positions `start_index ...`, broadcast to the shape of `inputs
    [batch, length, dim]` (`dim` even). It has no weights and no length limit.

    Args:
        max_wavelength: the longest wavelength of the sinusoids.

    Example:
    >>> import numpy as np
    >>> import keras_unitscale as ku
    >>> enc = ku.layers.SinePositionEncoding()(np.zeros((2, 10, 8), "float32"))
    >>> tuple(enc.shape)
    (2, 10, 8)
    """

    def __init__(self, max_wavelength=10000, **kwargs):
        super().__init__(**kwargs)
        self.max_wavelength = _wavelength(max_wavelength)
        self.supports_masking = True

    def build(self, inputs_shape):
        _check_inputs(inputs_shape)
        if int(inputs_shape[-1]) % 2:
            raise ValueError(f"`inputs` dim must be even; received shape {tuple(inputs_shape)}.")

    def call(self, inputs, start_index=0):
        shape = ops.shape(inputs)
        enc = uops.sinusoidal_encoding(
            shape[1], int(inputs.shape[-1]), start_index, self.max_wavelength, inputs.dtype
        )
        return ops.broadcast_to(enc, shape)

    def compute_output_shape(self, inputs_shape):
        return tuple(inputs_shape)

    def get_config(self):
        config = super().get_config()
        config.update(max_wavelength=self.max_wavelength)
        return config


@keras.saving.register_keras_serializable(package="keras_unitscale")
class RotaryEmbedding(keras.layers.Layer):
    """Rotary position embedding: rotates feature pairs by position-dependent angles.

    A rotation keeps norms, so a unit input stays unit in both passes. `MultiHeadAttention`
    applies it to queries and keys when given `rotary_max_wavelength`.

    Args:
        max_wavelength: the longest wavelength of the rotations.
        sequence_axis: the axis of `inputs` that holds positions (features are last).

    Example:
    >>> import numpy as np
    >>> import keras_unitscale as ku
    >>> x = np.ones((2, 6, 4, 8), "float32")  # [batch, length, heads, head_dim]
    >>> tuple(ku.layers.RotaryEmbedding()(x, start_index=3).shape)
    (2, 6, 4, 8)
    """

    def __init__(self, max_wavelength=10000, sequence_axis=1, **kwargs):
        super().__init__(**kwargs)
        self.max_wavelength = _wavelength(max_wavelength)
        if isinstance(sequence_axis, bool) or not isinstance(sequence_axis, int):
            raise ValueError(f"`sequence_axis` must be an int; received {sequence_axis!r}.")
        self.sequence_axis = sequence_axis
        self.supports_masking = True

    def build(self, inputs_shape):
        rank = len(inputs_shape)
        if not -rank <= self.sequence_axis < rank or self.sequence_axis % rank == rank - 1:
            raise ValueError(
                f"`sequence_axis` {self.sequence_axis} must name an axis of `inputs` other "
                f"than the last (features); received shape {tuple(inputs_shape)}."
            )

    def call(self, inputs, start_index=0):
        return uops.rotary_embedding(inputs, start_index, self.max_wavelength, self.sequence_axis)

    def compute_output_shape(self, inputs_shape):
        return tuple(inputs_shape)

    def get_config(self):
        config = super().get_config()
        config.update(max_wavelength=self.max_wavelength, sequence_axis=self.sequence_axis)
        return config


@keras.saving.register_keras_serializable(package="keras_unitscale")
class TokenAndPositionEmbedding(keras.layers.Layer):
    """Token embedding plus learned position embedding, unit-scaled.

    Both embeddings are unit; their sum is brought back to unit by
    `keras_unitscale.ops.add`. Each addend feeds only its own table, so no gradients are
    summed there and the add is left unconstrained: both table gradients stay unit.

    Args:
        vocabulary_size: number of token ids.
        sequence_length: the largest number of positions.
        embedding_dim: output size.
        mask_zero: id 0 is padding; a Keras mask is produced.

    Call arguments:
        inputs: integer ids `[batch, length]`.
        start_index: position of the first id (the cache index when decoding).

    Example:
    >>> import numpy as np
    >>> import keras_unitscale as ku
    >>> layer = ku.layers.TokenAndPositionEmbedding(100, 16, 32, mask_zero=True)
    >>> tuple(layer(np.array([[5, 6, 0]])).shape)
    (1, 3, 32)
    """

    def __init__(self, vocabulary_size, sequence_length, embedding_dim, mask_zero=False, **kwargs):
        super().__init__(**kwargs)
        self.vocabulary_size = positive_int(vocabulary_size, "vocabulary_size")
        self.sequence_length = positive_int(sequence_length, "sequence_length")
        self.embedding_dim = positive_int(embedding_dim, "embedding_dim")
        self.mask_zero = bool(mask_zero)
        self.token_embedding = Embedding(
            self.vocabulary_size, self.embedding_dim, mask_zero=self.mask_zero,
            dtype=self.dtype_policy, name="token_embedding",
        )
        self.position_embedding = PositionEmbedding(
            self.sequence_length, dtype=self.dtype_policy, name="position_embedding"
        )
        self.supports_masking = self.mask_zero

    def build(self, inputs_shape):
        if len(inputs_shape) != 2:
            raise ValueError(
                f"`inputs` must be token ids of shape [batch, length]; received shape "
                f"{tuple(inputs_shape)}."
            )
        self.token_embedding.build(inputs_shape)
        self.position_embedding.build(tuple(inputs_shape) + (self.embedding_dim,))

    def call(self, inputs, start_index=0):
        tokens = self.token_embedding(inputs)
        positions = self.position_embedding(tokens, start_index=start_index)
        return uops.add(tokens, positions, constraint=None)

    def compute_mask(self, inputs, mask=None):
        return self.token_embedding.compute_mask(inputs, mask)

    def compute_output_shape(self, inputs_shape):
        return tuple(inputs_shape) + (self.embedding_dim,)

    def get_config(self):
        config = super().get_config()
        config.update(
            vocabulary_size=self.vocabulary_size,
            sequence_length=self.sequence_length,
            embedding_dim=self.embedding_dim,
            mask_zero=self.mask_zero,
        )
        return config
