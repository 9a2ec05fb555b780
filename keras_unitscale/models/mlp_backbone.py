"""`MLPBackbone`: the fixed-window MLP language model (Bengio et al. 2003), unit-scaled."""

import keras
from keras import ops

from keras_unitscale import layers
from keras_unitscale.layers._validation import positive_int
from keras_unitscale.models.backbone import Backbone, standardize_dtype, token_inputs


def _nonnegative_int(value, name):
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"`{name}` must be a non-negative int; received {value!r:.80}.")
    return int(value)


@keras.saving.register_keras_serializable(package="keras_unitscale")
class MLPBackbone(Backbone):
    """A causal MLP over a fixed window of tokens: embed, concatenate, one hidden ReLU layer.

    Position `t` sees the `window` tokens `t - window + 1 ... t`; positions before the first
    token are read as `padding_token_id`, and so are the tokens where `padding_mask` is false.
    Their N(0, 1) embeddings (`embedding_dim` each) are concatenated, in order, oldest first,
    into `window * embedding_dim` features, which are unit because each part is, and go
    through a unit-scaled `Dense(hidden_dim, activation="relu")`: `1 / sqrt(fan_in)` on the
    matmul, the ReLU's output scaled to unit std (`keras_unitscale.ops.relu`). The output
    `[batch, length, hidden_dim]` is the hidden layer; `CausalLM` adds the readout to the
    vocabulary. Weights declare their u-muP roles through the layers (the table an
    embedding, the hidden kernel a weight of fan-in `window * embedding_dim`, the bias a bias).

    For decoding, `call_with_cache` runs new tokens against a cache of the token ids seen so
    far, `[batch, max_length]` (make one with `empty_cache`); its outputs equal those of a
    full pass at the same positions. A `CausalLM` with `tie_weights=True` (its default)
    needs `embedding_dim == hidden_dim`, the default.

    Args:
        vocabulary_size: number of token ids.
        hidden_dim: width of the hidden ReLU layer (the output).
        window: number of tokens each position sees, itself included.
        embedding_dim: width of each token's embedding; defaults to `hidden_dim`.
        padding_token_id: the id read before the first token and at masked positions.
        dtype: dtype policy of every layer.
        **kwargs: `name`, `trainable`.

    Call arguments:
        `{"token_ids": int [batch, length], "padding_mask": [batch, length]}`.

    Returns:
        `[batch, length, hidden_dim]` hidden states; position `t` sees positions
        `t - window + 1 ... t`.

    Example:
    >>> import numpy as np
    >>> import keras_unitscale as ku
    >>> backbone = ku.models.MLPBackbone(vocabulary_size=100, hidden_dim=16, window=3)
    >>> ids = np.array([[4, 7, 9, 5]])
    >>> full = backbone({"token_ids": ids, "padding_mask": np.ones_like(ids)})
    >>> tuple(full.shape)
    (1, 4, 16)
    >>> cache = backbone.empty_cache(batch_size=1, max_length=4)
    >>> hidden, cache = backbone.call_with_cache(ids[:, :3], cache, 0)
    >>> last, cache = backbone.call_with_cache(ids[:, 3:], cache, 3)
    >>> bool(np.allclose(last[:, 0], full[:, 3], atol=1e-5))
    True
    """

    def __init__(
        self,
        vocabulary_size,
        hidden_dim,
        window=8,
        embedding_dim=None,
        padding_token_id=0,
        dtype=None,
        **kwargs,
    ):
        dtype = standardize_dtype(dtype)
        vocabulary_size = positive_int(vocabulary_size, "vocabulary_size")
        hidden_dim = positive_int(hidden_dim, "hidden_dim")
        window = positive_int(window, "window")
        embedding_dim = hidden_dim if embedding_dim is None else positive_int(
            embedding_dim, "embedding_dim"
        )
        padding_token_id = _nonnegative_int(padding_token_id, "padding_token_id")
        if padding_token_id >= vocabulary_size:
            raise ValueError(
                f"`padding_token_id` must be a token id below vocabulary_size "
                f"({vocabulary_size}); received {padding_token_id}."
            )

        # === Layers ===
        token_embedding = layers.Embedding(
            vocabulary_size, embedding_dim, dtype=dtype, name="token_embedding"
        )
        self.concatenate = keras.layers.Reshape(
            (-1, window * embedding_dim), dtype=dtype, name="concatenate"
        )
        self.hidden = layers.Dense(hidden_dim, activation="relu", dtype=dtype, name="hidden")

        # === Config === (before the graph: `_hidden_states` reads them)
        self.token_embedding = token_embedding
        self.vocabulary_size = vocabulary_size
        self.hidden_dim = hidden_dim
        self.window = window
        self.embedding_dim = embedding_dim
        self.padding_token_id = padding_token_id

        # === Functional model ===
        inputs = token_inputs()
        ids = self._masked(inputs["token_ids"], inputs["padding_mask"])
        padded = ops.pad(ids, [[0, 0], [window - 1, 0]], constant_values=padding_token_id)
        super().__init__(
            inputs=inputs, outputs=self._hidden_states(padded), dtype=dtype, **kwargs
        )

    def _masked(self, token_ids, padding_mask):
        token_ids = ops.cast(token_ids, "int32")
        if padding_mask is None:
            return token_ids
        pad = ops.full_like(token_ids, self.padding_token_id)
        return ops.where(ops.cast(padding_mask, "bool"), token_ids, pad)

    def _hidden_states(self, padded_ids):
        """`[batch, T, hidden_dim]` from ids `[batch, T + window - 1]` (the window's start)."""
        w = self.window
        # Window ids [batch, T, window]: slice k holds token t - window + 1 + k at position t.
        slices = [padded_ids[:, k: k - (w - 1) if k < w - 1 else None] for k in range(w)]
        windows = ops.stack(slices, axis=-1)
        x = self.concatenate(self.token_embedding(windows))
        return self.hidden(x)

    def empty_cache(self, batch_size, max_length, dtype=None):
        """A cache `[batch_size, max_length]` of token ids, all `padding_token_id`."""
        return ops.full((batch_size, max_length), self.padding_token_id, dtype=dtype or "int32")

    def call_with_cache(self, token_ids, cache, cache_update_index, padding_mask=None):
        """Hidden states of `token_ids [batch, T]` placed at `cache_update_index`.

        Writes the ids into `cache` and reads each position's window from it.

        Args:
            token_ids: int `[batch, T]`, the tokens at positions `cache_update_index ...`.
            cache: int `[batch, max_length]`, the ids of the positions before.
            cache_update_index: int or scalar int tensor.
            padding_mask: optional boolean `[batch, max_length]` over the cached positions
                (false ones are read as `padding_token_id`).

        Returns:
            `(hidden, cache)`: `[batch, T, hidden_dim]` and the updated cache.
        """
        index = ops.cast(cache_update_index, "int32")
        cache = ops.slice_update(cache, [0, index], ops.cast(token_ids, cache.dtype))
        ids = self._masked(cache, padding_mask)
        w = self.window
        padded = ops.pad(ids, [[0, 0], [w - 1, 0]], constant_values=self.padding_token_id)
        batch, length = ops.shape(token_ids)[0], ops.shape(token_ids)[1]
        padded = ops.slice(padded, [0, index], [batch, length + w - 1])
        return self._hidden_states(padded), cache

    def get_config(self):
        config = super().get_config()
        config.update(
            vocabulary_size=self.vocabulary_size,
            hidden_dim=self.hidden_dim,
            window=self.window,
            # None when it follows hidden_dim, so that a preset loaded with another
            # hidden_dim keeps the two equal (as a tied readout needs).
            embedding_dim=None if self.embedding_dim == self.hidden_dim else self.embedding_dim,
            padding_token_id=self.padding_token_id,
        )
        return config
