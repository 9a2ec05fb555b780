"""Transformer backbones: a bidirectional encoder and a causal decoder with a decoding cache."""

import keras
from keras import ops

from keras_unitscale import layers
from keras_unitscale.models.backbone import (
    Backbone,
    standardize_dtype,
    token_inputs,
    write_layer_cache,
)
from keras_unitscale.models.transformer_stack import (
    check_transformer_arguments,
    transformer_stack,
)


class _TransformerBackbone(Backbone):
    """Token + position embedding, a stack of pre-norm blocks, a final norm (no gain): one
    `keras_unitscale.models.transformer_stack.transformer_stack`.

    The blocks take their residual taus from u-muP's depth rule
    (`keras_unitscale.ops.transformer_residual_taus`) through `(layer_index, num_layers)`: each
    attention branch and each MLP branch adds the same share to the residual stream whatever
    the depth, and the stream stays unit in both passes.
    """

    block_class = None

    def __init__(
        self,
        vocabulary_size,
        num_layers,
        num_heads,
        hidden_dim,
        intermediate_dim,
        max_sequence_length=512,
        dropout=0.0,
        activation="gelu",
        gated=False,
        normalization="layer_norm",
        residual_mult=1.0,
        residual_attn_ratio=1.0,
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

        # === Layers ===
        stack = transformer_stack(
            self.block_class,
            ("embeddings", "embeddings_dropout", "transformer_layer", "output_norm"),
            vocabulary_size, max_sequence_length, hidden_dim, num_layers, dropout,
            normalization, dtype,
            num_heads=num_heads,
            intermediate_dim=intermediate_dim,
            activation=activation,
            gated=gated,
            residual_mult=residual_mult,
            residual_attn_ratio=residual_attn_ratio,
        )
        self.embeddings = stack.embedding
        self.embeddings_dropout = stack.embedding_dropout
        self.transformer_layers = stack.blocks
        self.output_norm = stack.norm

        # === Functional model ===
        inputs = token_inputs()
        mask = ops.cast(inputs["padding_mask"], "bool")
        x = self.embeddings_dropout(self.embeddings(inputs["token_ids"]))
        for block in self.transformer_layers:
            x = self._call_block(block, x, mask)
        super().__init__(inputs=inputs, outputs=self.output_norm(x), dtype=dtype, **kwargs)

        # === Config ===
        self.token_embedding = self.embeddings.token_embedding
        self.vocabulary_size = vocabulary_size
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.hidden_dim = hidden_dim
        self.intermediate_dim = intermediate_dim
        self.max_sequence_length = max_sequence_length
        self.dropout = dropout
        self.activation = activation
        self.gated = bool(gated)
        self.normalization = normalization
        self.residual_mult = float(residual_mult)
        self.residual_attn_ratio = float(residual_attn_ratio)

    @property
    def head_dim(self):
        """Size of each attention head."""
        return self.hidden_dim // self.num_heads

    def get_config(self):
        config = super().get_config()
        config.update(
            vocabulary_size=self.vocabulary_size,
            num_layers=self.num_layers,
            num_heads=self.num_heads,
            hidden_dim=self.hidden_dim,
            intermediate_dim=self.intermediate_dim,
            max_sequence_length=self.max_sequence_length,
            dropout=self.dropout,
            activation=self.activation,
            gated=self.gated,
            normalization=self.normalization,
            residual_mult=self.residual_mult,
            residual_attn_ratio=self.residual_attn_ratio,
        )
        return config


_ARGS = """
    Args:
        vocabulary_size: number of token ids.
        num_layers: number of transformer blocks.
        num_heads: attention heads per block.
        hidden_dim: model width (divisible by `num_heads`).
        intermediate_dim: hidden size of each MLP.
        max_sequence_length: number of learned positions.
        dropout: dropout on the embeddings, attention probabilities and branch outputs.
        activation: MLP activation (`"gelu"`; `"silu"` with `gated=True`, ...).
        gated: gated (GLU) MLPs.
        normalization: `"layer_norm"` or `"rms_norm"` (pre-norm, no learnt gain or bias).
        residual_mult, residual_attn_ratio: u-muP's residual hyperparameters (see
            `keras_unitscale.ops.transformer_residual_taus`).
        dtype: dtype policy of every layer.
        **kwargs: `name`, `trainable`.
"""


@keras.saving.register_keras_serializable(package="keras_unitscale")
class TransformerEncoderBackbone(_TransformerBackbone):
    __doc__ = (
        """A unit-scaled, pre-norm, bidirectional transformer encoder (BERT-like, no head).

    Token ids and learned positions are embedded (their unit-scaled sum is unit), then run
    through `num_layers` `keras_unitscale.layers.TransformerEncoderBlock`s, whose residual
    taus follow u-muP's depth rule, and a final norm without gain. Padded tokens are masked
    out of every attention.
"""
        + _ARGS
        + """
    Call arguments:
        `{"token_ids": int [batch, length], "padding_mask": [batch, length]}`.

    Returns:
        `[batch, length, hidden_dim]` hidden states.

    Example:
    >>> import numpy as np
    >>> import keras_unitscale as ku
    >>> backbone = ku.models.TransformerEncoderBackbone(
    ...     vocabulary_size=100, num_layers=2, num_heads=2, hidden_dim=16,
    ...     intermediate_dim=32, max_sequence_length=8)
    >>> x = {"token_ids": np.array([[4, 7, 9, 0]]), "padding_mask": np.array([[1, 1, 1, 0]])}
    >>> tuple(backbone(x).shape)
    (1, 4, 16)
    """
    )

    block_class = layers.TransformerEncoderBlock

    def _call_block(self, block, x, mask):
        return block(x, padding_mask=mask)


@keras.saving.register_keras_serializable(package="keras_unitscale")
class TransformerDecoderBackbone(_TransformerBackbone):
    __doc__ = (
        """A unit-scaled, pre-norm, causal transformer decoder (GPT-like, no head).

    As `TransformerEncoderBackbone`, with causal `keras_unitscale.layers.TransformerDecoderBlock`s
    (no cross-attention). For decoding, `call_with_cache` runs new tokens against a key/value
    cache in KerasHub's layout, `[batch, num_layers, 2, max_length, num_heads, head_dim]`
    (make one with `empty_cache`); its outputs equal those of a full causal pass over
    `max_length` tokens at the same positions.
"""
        + _ARGS
        + """
    Call arguments:
        `{"token_ids": int [batch, length], "padding_mask": [batch, length]}`.

    Returns:
        `[batch, length, hidden_dim]` hidden states; position `t` sees positions `<= t`.

    Example:
    >>> import numpy as np
    >>> import keras_unitscale as ku
    >>> backbone = ku.models.TransformerDecoderBackbone(
    ...     vocabulary_size=100, num_layers=2, num_heads=2, hidden_dim=16,
    ...     intermediate_dim=32, max_sequence_length=8)
    >>> ids = np.array([[4, 7, 9, 5]])
    >>> full = backbone({"token_ids": ids, "padding_mask": np.ones_like(ids)})
    >>> cache = backbone.empty_cache(batch_size=1, max_length=4)
    >>> hidden, cache = backbone.call_with_cache(ids[:, :3], cache, 0)
    >>> last, cache = backbone.call_with_cache(ids[:, 3:], cache, 3)
    >>> bool(np.allclose(last[:, 0], full[:, 3], atol=1e-4))
    True
    """
    )

    block_class = layers.TransformerDecoderBlock

    def _call_block(self, block, x, mask):
        return block(x, decoder_padding_mask=mask)

    def empty_cache(self, batch_size, max_length, dtype=None):
        """A zero cache `[batch_size, num_layers, 2, max_length, num_heads, head_dim]`."""
        shape = (batch_size, self.num_layers, 2, max_length, self.num_heads, self.head_dim)
        return ops.zeros(shape, dtype=dtype or self.compute_dtype)

    def call_with_cache(self, token_ids, cache, cache_update_index, padding_mask=None):
        """Hidden states of `token_ids [batch, T]` placed at `cache_update_index`.

        Each block writes the new keys and values into its slice of `cache` and attends to
        every cached position up to its own (causal).

        Args:
            token_ids: int `[batch, T]`, the tokens at positions `cache_update_index ...`.
            cache: `[batch, num_layers, 2, max_length, num_heads, head_dim]`.
            cache_update_index: int or scalar int tensor.
            padding_mask: optional boolean `[batch, max_length]` over the cached positions
                (false keys are never attended to), e.g. for left-padded prompts.

        Returns:
            `(hidden, cache)`: `[batch, T, hidden_dim]` and the updated cache.
        """
        x = self.embeddings(token_ids, start_index=cache_update_index)
        mask = None if padding_mask is None else ops.cast(padding_mask, "bool")
        for i, block in enumerate(self.transformer_layers):
            x, layer_cache = block(
                x,
                decoder_padding_mask=mask,
                self_attention_cache=cache[:, i, ...],
                self_attention_cache_update_index=cache_update_index,
                training=False,
            )
            cache = write_layer_cache(cache, i, layer_cache)
        return self.output_norm(x), cache
