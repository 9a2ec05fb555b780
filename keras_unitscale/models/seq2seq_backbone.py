"""`Seq2SeqBackbone`: a unit-scaled pre-norm transformer encoder-decoder."""

import keras
from keras import ops

from keras_unitscale import layers
from keras_unitscale.layers._validation import positive_int
from keras_unitscale.models.backbone import Backbone, standardize_dtype, write_layer_cache
from keras_unitscale.models.transformer_stack import (
    check_transformer_arguments,
    transformer_stack,
)


def _inputs(prefix):
    return {
        f"{prefix}_token_ids": keras.Input((None,), dtype="int32", name=f"{prefix}_token_ids"),
        f"{prefix}_padding_mask": keras.Input(
            (None,), dtype="int32", name=f"{prefix}_padding_mask"
        ),
    }


@keras.saving.register_keras_serializable(package="keras_unitscale")
class Seq2SeqBackbone(Backbone):
    """Transformer encoder-decoder: source ids and target ids in, decoder states out.

    Encoder: token + learned position embedding (unit-scaled sum), `num_encoder_layers`
    `TransformerEncoderBlock`s, a final norm. Decoder: the same embedding for the target
    vocabulary, `num_decoder_layers` `TransformerDecoderBlock`s with causal self-attention and
    cross-attention to the encoder, a final norm. Each side is one `transformer_stack`, as
    the other transformer backbones are. The residual taus follow u-muP's depth rule
    in each stack (`transformer_residual_taus`, `decoder_residual_taus`). No head: the task
    (`Seq2SeqLM`) adds the readout.

    For decoding, the decoder follows the cache contract of `Backbone`: `with_source(
    empty_cache(batch_size, max_length), encoder_token_ids, encoder_padding_mask)` runs the
    encoder once and makes the cache, then `call_with_cache(token_ids, cache,
    cache_update_index)` runs the decoder on new target tokens. Underneath,
    `call_decoder_with_cache` takes KerasHub-layout caches,
    `[batch, num_decoder_layers, 2, length, num_heads, key_dim]`, for self-attention (written
    at `cache_update_index`) and for cross-attention (filled on the first call, with
    `cross_attention_cache_update_index=0`, then reused with `None`).

    Args:
        vocabulary_size: source vocabulary size.
        num_layers: encoder and decoder depth (unless given separately).
        num_heads: attention heads.
        hidden_dim: model width.
        intermediate_dim: MLP hidden size.
        max_sequence_length: positions of the learned position embeddings (both sides).
        decoder_vocabulary_size: target vocabulary size; default `vocabulary_size`.
        num_encoder_layers, num_decoder_layers: depths; default `num_layers`.
        dropout: dropout on the embeddings, attention probabilities and branch outputs.
        activation, gated, normalization: MLP and norm choices of the blocks.
        residual_mult, residual_attn_ratio: u-muP's residual hyperparameters, per stack (see
            `keras_unitscale.ops.transformer_residual_taus`, `decoder_residual_taus`).
        attention_mult: u-muP's attention multiplier: logits are `attention_mult / head_dim`
            times `q . k` (`sqrt(head_dim)` gives the standard `1 / sqrt(head_dim)`).
        dtype: dtype policy of every layer.

    Call arguments:
        `{"encoder_token_ids", "encoder_padding_mask", "decoder_token_ids",
        "decoder_padding_mask"}`, ints `[batch, length]`.

    Returns:
        Decoder states `[batch, decoder_length, hidden_dim]`.

    Example:
    >>> import numpy as np
    >>> import keras_unitscale as ku
    >>> backbone = ku.models.Seq2SeqBackbone(100, num_layers=1, num_heads=2, hidden_dim=16,
    ...                                      intermediate_dim=32, max_sequence_length=8)
    >>> x = {"encoder_token_ids": np.array([[2, 5, 3, 0]]),
    ...      "encoder_padding_mask": np.array([[1, 1, 1, 0]]),
    ...      "decoder_token_ids": np.array([[2, 7, 8]]),
    ...      "decoder_padding_mask": np.array([[1, 1, 1]])}
    >>> tuple(backbone(x).shape)
    (1, 3, 16)
    """

    def __init__(
        self,
        vocabulary_size,
        num_layers,
        num_heads,
        hidden_dim,
        intermediate_dim,
        max_sequence_length=128,
        decoder_vocabulary_size=None,
        num_encoder_layers=None,
        num_decoder_layers=None,
        dropout=0.0,
        activation="gelu",
        gated=False,
        normalization="layer_norm",
        residual_mult=1.0,
        residual_attn_ratio=1.0,
        attention_mult=1.0,
        dtype=None,
        **kwargs,
    ):
        dtype = standardize_dtype(dtype)
        (
            vocabulary_size, num_layers, num_heads, hidden_dim, intermediate_dim,
            max_sequence_length, dropout, normalization,
        ) = check_transformer_arguments(
            vocabulary_size, num_layers, num_heads, hidden_dim, intermediate_dim,
            max_sequence_length, dropout, normalization,
        )
        decoder_vocabulary_size = positive_int(
            decoder_vocabulary_size or vocabulary_size, "decoder_vocabulary_size"
        )
        num_encoder_layers = positive_int(num_encoder_layers or num_layers, "num_encoder_layers")
        num_decoder_layers = positive_int(num_decoder_layers or num_layers, "num_decoder_layers")

        # === Layers ===
        common = dict(
            max_sequence_length=max_sequence_length, hidden_dim=hidden_dim, dropout=dropout,
            normalization=normalization, dtype=dtype, num_heads=num_heads,
            intermediate_dim=intermediate_dim, activation=activation, gated=gated,
            residual_mult=residual_mult, residual_attn_ratio=residual_attn_ratio,
            attention_mult=attention_mult,
        )
        encoder = transformer_stack(
            layers.TransformerEncoderBlock,
            ("encoder_embedding", "encoder_embedding_dropout", "encoder_layer", "encoder_norm"),
            vocabulary_size=vocabulary_size, num_layers=num_encoder_layers, **common,
        )
        decoder = transformer_stack(
            layers.TransformerDecoderBlock,
            ("decoder_embedding", "decoder_embedding_dropout", "decoder_layer", "decoder_norm"),
            vocabulary_size=decoder_vocabulary_size, num_layers=num_decoder_layers, **common,
        )
        self.encoder_embedding, self.decoder_embedding = encoder.embedding, decoder.embedding
        self.encoder_embedding_dropout = encoder.embedding_dropout
        self.decoder_embedding_dropout = decoder.embedding_dropout
        self.encoder_layers, self.decoder_layers = encoder.blocks, decoder.blocks
        self.encoder_norm, self.decoder_norm = encoder.norm, decoder.norm

        # === Functional model ===
        inputs = {**_inputs("encoder"), **_inputs("decoder")}
        encoded = self._encode(inputs["encoder_token_ids"], inputs["encoder_padding_mask"])
        x = self.decoder_embedding_dropout(self.decoder_embedding(inputs["decoder_token_ids"]))
        decoder_mask = ops.cast(inputs["decoder_padding_mask"], "bool")
        encoder_mask = ops.cast(inputs["encoder_padding_mask"], "bool")
        for block_layer in self.decoder_layers:
            x = block_layer(
                x, encoded, decoder_padding_mask=decoder_mask, encoder_padding_mask=encoder_mask
            )
        outputs = self.decoder_norm(x)
        super().__init__(inputs=inputs, outputs=outputs, dtype=dtype, **kwargs)

        # === Config ===
        self.token_embedding = self.decoder_embedding.token_embedding
        self.vocabulary_size = vocabulary_size
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.hidden_dim = hidden_dim
        self.intermediate_dim = intermediate_dim
        self.max_sequence_length = max_sequence_length
        self.decoder_vocabulary_size = decoder_vocabulary_size
        self.num_encoder_layers = num_encoder_layers
        self.num_decoder_layers = num_decoder_layers
        self.dropout = dropout
        self.activation = activation
        self.gated = bool(gated)
        self.normalization = normalization
        self.residual_mult = float(residual_mult)
        self.residual_attn_ratio = float(residual_attn_ratio)
        self.attention_mult = float(attention_mult)

    def _encode(self, token_ids, padding_mask, training=None):
        x = self.encoder_embedding_dropout(self.encoder_embedding(token_ids), training=training)
        mask = ops.cast(padding_mask, "bool")
        for block_layer in self.encoder_layers:
            x = block_layer(x, padding_mask=mask, training=training)
        return self.encoder_norm(x)

    def encode(self, token_ids, padding_mask):
        """Encoder states `[batch, source_length, hidden_dim]` (inference)."""
        return self._encode(token_ids, padding_mask, training=False)

    @property
    def head_dim(self):
        return self.hidden_dim // self.num_heads

    def empty_cache(self, batch_size, max_length, dtype=None):
        """A zero cache `[batch, num_decoder_layers, 2, max_length, num_heads, head_dim]`."""
        shape = (batch_size, self.num_decoder_layers, 2, max_length, self.num_heads,
                 self.head_dim)
        return ops.zeros(shape, dtype=dtype or self.compute_dtype)

    def with_source(self, cache, encoder_token_ids, encoder_padding_mask):
        """The decoder's cache for `call_with_cache`: `cache` (from `empty_cache`) and the
        source, encoded once here. The first `call_with_cache` projects the encoder states
        into the cross-attention keys and values; the later calls reuse them.

        Returns:
            `{"self_attention": cache, "encoder_outputs": [batch, source_length,
            hidden_dim], "encoder_padding_mask": [batch, source_length]}`.
        """
        return {
            "self_attention": cache,
            "encoder_outputs": self.encode(encoder_token_ids, encoder_padding_mask),
            "encoder_padding_mask": encoder_padding_mask,
        }

    def call_with_cache(self, token_ids, cache, cache_update_index, padding_mask=None):
        """Decoder states of `token_ids [batch, T]` at positions `cache_update_index ...`.

        Args:
            token_ids: int `[batch, T]`, target tokens.
            cache: from `with_source`, or a previous call.
            cache_update_index: int or scalar int tensor.
            padding_mask: optional boolean `[batch, max_length]` over the target positions,
                false on padding (those keys are never attended to).

        Returns:
            `(hidden, cache)`: `[batch, T, hidden_dim]` and the updated cache (holding the
            cross-attention keys and values from the first call on).
        """
        encoded, encoder_mask = cache["encoder_outputs"], cache["encoder_padding_mask"]
        first = "cross_attention" not in cache
        cross = cache.get("cross_attention")
        if first:
            cross = self.empty_cache(ops.shape(encoded)[0], ops.shape(encoded)[1])
        hidden, self_cache, cross = self.call_decoder_with_cache(
            encoded, encoder_mask, token_ids, cache["self_attention"], cache_update_index,
            cross, 0 if first else None, decoder_padding_mask=padding_mask,
        )
        return hidden, {**cache, "self_attention": self_cache, "cross_attention": cross}

    def call_decoder_with_cache(
        self,
        encoder_outputs,
        encoder_padding_mask,
        token_ids,
        self_attention_cache,
        cache_update_index,
        cross_attention_cache,
        cross_attention_cache_update_index=None,
        decoder_padding_mask=None,
    ):
        """Decoder states of `token_ids [batch, T]` placed at `cache_update_index`.

        Returns `(hidden_states, self_attention_cache, cross_attention_cache)`; see the
        class docstring for the cache layout. `decoder_padding_mask`, optional boolean
        `[batch, length]` over the self-attention cache, is false on padded target positions.
        """
        x = self.decoder_embedding(token_ids, start_index=cache_update_index)
        encoder_mask = ops.cast(encoder_padding_mask, "bool")
        if decoder_padding_mask is not None:
            decoder_padding_mask = ops.cast(decoder_padding_mask, "bool")
        self_cache_all, cross_cache_all = self_attention_cache, cross_attention_cache
        for i, block_layer in enumerate(self.decoder_layers):
            x, self_cache, cross_cache = block_layer(
                x,
                encoder_outputs,
                decoder_padding_mask=decoder_padding_mask,
                encoder_padding_mask=encoder_mask,
                self_attention_cache=self_attention_cache[:, i],
                self_attention_cache_update_index=cache_update_index,
                cross_attention_cache=cross_attention_cache[:, i],
                cross_attention_cache_update_index=cross_attention_cache_update_index,
                training=False,
            )
            self_cache_all = write_layer_cache(self_cache_all, i, self_cache)
            if cross_attention_cache_update_index is not None:  # else the cache is unchanged
                cross_cache_all = write_layer_cache(cross_cache_all, i, cross_cache)
        hidden = self.decoder_norm(x)
        return hidden, self_cache_all, cross_cache_all

    def get_config(self):
        config = super().get_config()
        config.update(
            vocabulary_size=self.vocabulary_size,
            num_layers=self.num_layers,
            num_heads=self.num_heads,
            hidden_dim=self.hidden_dim,
            intermediate_dim=self.intermediate_dim,
            max_sequence_length=self.max_sequence_length,
            decoder_vocabulary_size=self.decoder_vocabulary_size,
            num_encoder_layers=self.num_encoder_layers,
            num_decoder_layers=self.num_decoder_layers,
            dropout=self.dropout,
            activation=self.activation,
            gated=self.gated,
            normalization=self.normalization,
            residual_mult=self.residual_mult,
            residual_attn_ratio=self.residual_attn_ratio,
            attention_mult=self.attention_mult,
        )
        return config
