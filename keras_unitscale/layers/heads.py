"""The heads: the layers that end a task model, from a backbone's hidden states to its
outputs. `SequencePooling` (hidden states to one vector per sequence), `LMHead` (hidden
states to vocabulary logits, u-muP's readout, tied or not) and `OutputMultiplier`.

u-muP's output multiplier is one rule, `mult * logits` in the forward pass with the gradient
passed on unscaled, applied in one place: the readout op (`ops.readout(..., mult=)`, without
another pass over the logits), which `LMHead(output_mult=)` and `Dense(readout=True,
output_mult=)` (`TextClassifier`'s head) call. `OutputMultiplier` is the same rule as a layer
of its own, for logits made elsewhere; the tasks no longer use it (it stays registered, so
`.keras` files that hold one still load).
"""

import keras
import numpy as np
from keras import ops

from keras_unitscale import ops as uops
from keras_unitscale.layers import _weights
from keras_unitscale.layers._quantize import QuantizableKernels
from keras_unitscale._validation import one_of, positive_int, positive_number


@keras.saving.register_keras_serializable(package="keras_unitscale")
class LMHead(QuantizableKernels, keras.layers.Layer):
    """The last layer of a language model: `readout(x, W)` with `W [hidden, vocabulary]`.

    It is `keras_unitscale.ops.readout` (output scale `1 / hidden`, input gradient scaled to
    unit, unconstrained), the last matmul before the loss. Untied, `W` is the layer's own
    N(0, 1) kernel, as `Dense(vocabulary_size, readout=True, use_bias=False)`. Tied, `W` is
    the transpose of a token `Embedding`'s table, which then gets the gradients of both uses;
    the table stays a weight of the embedding (saved there, not here), so a tied head is
    rebuilt by its task from the task's config rather than deserialised on its own.

    Args:
        vocabulary_size: number of logits.
        embedding: a `keras_unitscale.layers.Embedding` to tie to, or `None`.
        output_mult: u-muP's output multiplier: the logits are multiplied by it. At 1 they
            start with std `hidden ** -0.5` and, under one global Adam step, move `hidden`
            times slower than a matmul's output would; a larger value speeds them up.

    Example:
    >>> import numpy as np
    >>> import keras_unitscale as ku
    >>> from keras_unitscale.layers import LMHead
    >>> embedding = ku.layers.Embedding(50, 16)
    >>> hidden = embedding(np.array([[1, 2, 3]]))
    >>> tied = LMHead(50, embedding=embedding)
    >>> tuple(tied(hidden).shape), len(tied.weights), len(LMHead(50)(hidden).shape)
    ((1, 3, 50), 0, 3)
    """

    def __init__(self, vocabulary_size, embedding=None, output_mult=1.0, **kwargs):
        kwargs.pop("tied", None)
        super().__init__(**kwargs)
        self.vocabulary_size = positive_int(vocabulary_size, "vocabulary_size")
        self.output_mult = positive_number(output_mult, "output_mult")
        if embedding is not None:
            if getattr(embedding, "input_dim", None) != self.vocabulary_size:
                raise ValueError(
                    "`embedding` must be an Embedding with input_dim == vocabulary_size "
                    f"({self.vocabulary_size}); received {embedding!r:.80}."
                )
            # A function, not an attribute: Keras would track the embedding as our sublayer
            # and save its table twice.
            # The table's float value, dequantised if the embedding was quantised.
            self._table = lambda: embedding.kernel_value("embeddings")
        else:
            self._table = None
        self.tied = embedding is not None
        self.supports_masking = True

    def build(self, inputs_shape):
        if inputs_shape[-1] is None:
            raise ValueError(f"The last dimension of `inputs` must be known; got {inputs_shape}.")
        if not self.tied:
            self.kernel = self.add_kernel(
                "kernel",
                (int(inputs_shape[-1]), self.vocabulary_size),
                channel_axis=1,
                initializer=keras.initializers.RandomNormal(stddev=1.0),
            )
            _weights.declare(self.kernel, "readout")

    def call(self, inputs):
        kernel = ops.transpose(self._table()) if self.tied else self.kernel_value("kernel")
        return uops.readout(inputs, kernel, mult=self.output_mult)

    def compute_output_shape(self, inputs_shape):
        return tuple(inputs_shape[:-1]) + (self.vocabulary_size,)

    def get_config(self):
        config = super().get_config()
        config.update(
            vocabulary_size=self.vocabulary_size, tied=self.tied, output_mult=self.output_mult
        )
        return config


POOLINGS = ("mean", "max", "first", "last")


@keras.saving.register_keras_serializable(package="keras_unitscale")
class SequencePooling(keras.layers.Layer):
    """Pools `[batch, length, dim]` hidden states to `[batch, dim]` over the real tokens.

    - `"mean"`: the average of the real tokens. Its gradient is unit-scaled: every real
      token receives the pooled gradient itself rather than `1 / n` of it (the forward
      mean, the backward sum). The hidden states feed nothing else, so no constraint ties
      the two scales, and the backbone below gets unit gradients at every position, as its
      own weight-gradient scales assume.
    - `"max"`: the largest value of each feature over the real tokens.
    - `"first"`: the first token (a `[CLS]` token for a transformer encoder).
    - `"last"`: the last real token (for causal or forward-only recurrent backbones).

    Args:
        pooling: one of `"mean"`, `"max"`, `"first"`, `"last"`.

    Call arguments:
        hidden: `[batch, length, dim]`.
        padding_mask: `[batch, length]`, true (or 1) on real tokens (right-padded).

    Example:
    >>> import numpy as np
    >>> from keras_unitscale.layers import SequencePooling
    >>> hidden = np.arange(6, dtype="float32").reshape(1, 3, 2)
    >>> mask = np.array([[1, 1, 0]])
    >>> np.asarray(SequencePooling("mean")(hidden, mask)).tolist()
    [[1.0, 2.0]]
    >>> np.asarray(SequencePooling("last")(hidden, mask)).tolist()
    [[2.0, 3.0]]
    """

    def __init__(self, pooling="mean", **kwargs):
        super().__init__(**kwargs)
        self.pooling = one_of(pooling, POOLINGS, "pooling")
        self.supports_masking = True  # takes the padding mask explicitly; returns none

    def compute_mask(self, hidden, mask=None):
        return None

    def call(self, hidden, padding_mask):
        mask = ops.cast(padding_mask, "bool")
        if self.pooling == "first":
            return hidden[:, 0, :]
        if self.pooling == "last":
            last = ops.maximum(ops.sum(ops.cast(mask, "int32"), axis=1) - 1, 0)
            return ops.take_along_axis(hidden, last[:, None, None], axis=1)[:, 0, :]
        weights = ops.cast(mask, hidden.dtype)[:, :, None]
        if self.pooling == "max":
            lowest = ops.cast(np.finfo(keras.backend.standardize_dtype(hidden.dtype)).min,
                              hidden.dtype)
            return ops.max(ops.where(weights > 0, hidden, lowest), axis=1)
        count = ops.maximum(ops.sum(weights, axis=1), 1.0)
        # Forward: sum / n. Backward: the pooled gradient to every real token (see above).
        return uops.scale_fwd(ops.sum(hidden * weights, axis=1), 1.0 / count)

    def compute_output_shape(self, hidden_shape, padding_mask_shape=None):
        return (hidden_shape[0], hidden_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update(pooling=self.pooling)
        return config


@keras.saving.register_keras_serializable(package="keras_unitscale")
class OutputMultiplier(keras.layers.Layer):
    """u-muP's output multiplier: `mult * logits` forward, the gradient passed on unscaled.

    Example:
    >>> import numpy as np
    >>> from keras_unitscale.layers import OutputMultiplier
    >>> np.asarray(OutputMultiplier(4.0)(np.ones((1, 2), "float32"))).tolist()
    [[4.0, 4.0]]
    """

    def __init__(self, mult, **kwargs):
        super().__init__(**kwargs)
        self.mult = positive_number(mult, "mult")
        self.built = True

    def call(self, logits):
        return uops.scale_fwd(logits, self.mult)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(mult=self.mult)
        return config
