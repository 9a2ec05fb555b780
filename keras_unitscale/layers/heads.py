"""The heads: the layers that end a task model, from a backbone's hidden states to its
outputs. `LMHead`: hidden states to vocabulary logits (u-muP's readout, tied or not).
"""

import keras
from keras import ops

from keras_unitscale import ops as uops
from keras_unitscale.layers import _weights
from keras_unitscale.layers._quantize import QuantizableKernels
from keras_unitscale.layers._validation import positive_int, positive_number


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
