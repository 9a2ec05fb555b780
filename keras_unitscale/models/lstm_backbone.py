"""`LSTMBackbone`: token embedding and a stack of (bidirectional) unit-scaled LSTMs."""

import keras
from keras import ops

from keras_unitscale import layers
from keras_unitscale.layers._validation import positive_int
from keras_unitscale.models.backbone import Backbone, standardize_dtype, token_inputs
from keras_unitscale.ops.dropout import validate_rate


@keras.saving.register_keras_serializable(package="keras_unitscale")
class LSTMBackbone(Backbone):
    """Embedding, then `num_layers` unit-scaled LSTMs returning every step.

    Token ids are embedded (N(0, 1) table), passed through unit-scaled dropout, and through
    the stack of `keras_unitscale.layers.LSTM`s (with unit-scaled dropout between them). The
    padding mask is handed to every LSTM as its Keras mask: padded steps carry the state
    over, so with right-padding the last output of a forward LSTM is that of the last real
    token. Bidirectional layers concatenate a forward and a backward LSTM of
    `hidden_dim // 2` units each; the concatenation of two unit tensors is unit.

    Every activation starts near unit scale, so the model trains without loss scaling in
    float16 and with the default learning rate of `UnitScaledModel.compile`.

    A unidirectional backbone is a decoder: `empty_cache` and `call_with_cache` decode a few
    tokens at a time from the `(h, c)` state of every layer, with the arguments of
    `TransformerDecoderBackbone`'s (the decoder contract of `Backbone`). Its
    `parallel_prefill` is false: a pass over the prompts would be a loop over positions like
    decoding itself, so generation feeds them through the decoding loop (one compiled loop).

    Args:
        vocabulary_size: number of token ids.
        hidden_dim: width of the output (of each layer); even when `bidirectional`.
        num_layers: number of stacked LSTM layers.
        bidirectional: run each layer in both directions and concatenate.
        dropout: rate of the unit-scaled dropout on the embeddings and between layers.
        embedding_dim: width of the token embedding; defaults to `hidden_dim`.
        dtype: dtype policy of every layer.
        **kwargs: `name`, `trainable`.

    Call arguments:
        `{"token_ids": int [batch, length], "padding_mask": [batch, length]}`.

    Returns:
        `[batch, length, hidden_dim]` outputs of the last layer.

    Example:
    >>> import numpy as np
    >>> import keras_unitscale as ku
    >>> backbone = ku.models.LSTMBackbone(vocabulary_size=100, hidden_dim=16, num_layers=2)
    >>> x = {"token_ids": np.array([[4, 7, 9, 0]]), "padding_mask": np.array([[1, 1, 1, 0]])}
    >>> tuple(backbone(x).shape)
    (1, 4, 16)
    >>> decoder = ku.models.LSTMBackbone(vocabulary_size=100, hidden_dim=16, bidirectional=False)
    >>> ids = np.array([[4, 7, 9, 5]])
    >>> full = decoder({"token_ids": ids, "padding_mask": np.ones_like(ids)})
    >>> hidden, cache = decoder.call_with_cache(ids[:, :3], decoder.empty_cache(1, 4), 0)
    >>> last, cache = decoder.call_with_cache(ids[:, 3:], cache, 3)
    >>> bool(np.allclose(last[:, 0], full[:, 3], atol=1e-5))
    True
    """

    def __init__(
        self,
        vocabulary_size,
        hidden_dim,
        num_layers=1,
        bidirectional=True,
        dropout=0.0,
        embedding_dim=None,
        dtype=None,
        **kwargs,
    ):
        dtype = standardize_dtype(dtype)
        vocabulary_size = positive_int(vocabulary_size, "vocabulary_size")
        hidden_dim = positive_int(hidden_dim, "hidden_dim")
        num_layers = positive_int(num_layers, "num_layers")
        bidirectional = bool(bidirectional)
        if bidirectional and hidden_dim % 2:
            raise ValueError(
                "`hidden_dim` must be even when `bidirectional=True` (each direction has "
                f"hidden_dim // 2 units); received hidden_dim={hidden_dim}."
            )
        dropout = validate_rate(dropout, "dropout")
        embedding_dim = hidden_dim if embedding_dim is None else positive_int(
            embedding_dim, "embedding_dim"
        )

        # === Layers ===
        token_embedding = layers.Embedding(
            vocabulary_size, embedding_dim, dtype=dtype, name="token_embedding"
        )
        self.embeddings_dropout = layers.Dropout(dropout, dtype=dtype, name="embeddings_dropout")
        self.lstm_layers = []
        self.dropout_layers = []
        units = hidden_dim // 2 if bidirectional else hidden_dim
        for i in range(num_layers):
            lstm = layers.LSTM(units, return_sequences=True, dtype=dtype, name=f"lstm_{i}")
            if bidirectional:
                lstm = keras.layers.Bidirectional(lstm, dtype=dtype, name=f"bidirectional_{i}")
            self.lstm_layers.append(lstm)
            if i < num_layers - 1:
                self.dropout_layers.append(
                    layers.Dropout(dropout, dtype=dtype, name=f"dropout_{i}")
                )

        # === Functional model ===
        inputs = token_inputs()
        mask = ops.cast(inputs["padding_mask"], "bool")
        x = self.embeddings_dropout(token_embedding(inputs["token_ids"]))
        for i, lstm in enumerate(self.lstm_layers):
            x = lstm(x, mask=mask)
            if i < num_layers - 1:
                x = self.dropout_layers[i](x)
        super().__init__(inputs=inputs, outputs=x, dtype=dtype, **kwargs)

        # === Config ===
        self.token_embedding = token_embedding
        self.vocabulary_size = vocabulary_size
        self.hidden_dim = hidden_dim
        self.num_layers = num_layers
        self.bidirectional = bidirectional
        self.dropout = dropout
        self.embedding_dim = embedding_dim

    # Decoding with a cache ------------------------------------------------------------------
    parallel_prefill = False

    def _check_decoder(self):
        if self.bidirectional:
            raise ValueError(
                "Decoding needs a unidirectional LSTMBackbone (bidirectional=False): a "
                "backward LSTM would see the next tokens."
            )

    def empty_cache(self, batch_size, max_length, dtype=None):
        """A zero cache: `{"state": [batch_size, num_layers, 2, hidden_dim], "length": int32
        [batch_size]}`, the `(h, c)` state of every layer and how many positions it holds.

        `max_length` is there for the decoder contract; an LSTM's state does not grow with it.
        """
        self._check_decoder()
        shape = (batch_size, self.num_layers, 2, self.hidden_dim)
        return {
            "state": ops.zeros(shape, dtype=dtype or self.compute_dtype),
            "length": ops.zeros((batch_size,), dtype="int32"),
        }

    def call_with_cache(self, token_ids, cache, cache_update_index, padding_mask=None):
        """Hidden states of `token_ids [batch, T]` at positions `cache_update_index ...`.

        The cache holds each row's state after its first `cache["length"]` positions. A
        position the state already holds, or one that `padding_mask` marks false, leaves the
        state as it is, and its output is the state's `h`. So the tokens come in order, and
        a call may go over positions already held: as with a transformer's key/value cache,
        decoding can go on from the shortest prompt after one pass over all the prompts.

        Args:
            token_ids: int `[batch, T]`, the tokens at positions `cache_update_index ...`.
            cache: from `empty_cache` or a previous call.
            cache_update_index: int or scalar int tensor.
            padding_mask: optional boolean `[batch, max_length]` over the positions, false on
                padding.

        Returns:
            `(hidden, cache)`: `[batch, T, hidden_dim]` and the updated cache.
        """
        self._check_decoder()
        state, length = cache["state"], cache["length"]
        positions = ops.arange(ops.shape(token_ids)[1], dtype="int32")
        positions = positions + ops.cast(cache_update_index, "int32")
        new = ops.greater_equal(positions[None, :], length[:, None])
        if padding_mask is not None:
            new = ops.logical_and(new, ops.cast(ops.take(padding_mask, positions, axis=1), "bool"))
        x = self.token_embedding(token_ids)
        states = []
        for i, layer in enumerate(self.lstm_layers):
            x, (h, c) = layer.step(x, [state[:, i, 0], state[:, i, 1]], mask=new)
            states.append(ops.stack([h, ops.cast(c, h.dtype)], axis=1))
        hidden = ops.where(new[..., None], x, h[:, None, :])
        cache = {
            "state": ops.cast(ops.stack(states, axis=1), state.dtype),
            "length": length + ops.sum(ops.cast(new, "int32"), axis=1),
        }
        return hidden, cache

    def get_config(self):
        config = super().get_config()
        config.update(
            vocabulary_size=self.vocabulary_size,
            hidden_dim=self.hidden_dim,
            num_layers=self.num_layers,
            bidirectional=self.bidirectional,
            dropout=self.dropout,
            embedding_dim=self.embedding_dim,
        )
        return config
