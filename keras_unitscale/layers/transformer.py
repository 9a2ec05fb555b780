"""Pre-norm transformer encoder and decoder blocks, unit-scaled (u-muP residual rule).

Each branch (self-attention, cross-attention, MLP) reads a normalised copy of the residual
stream and is merged back by `residual_split` / `residual_add` with its own `tau`, so the
stream stays unit in both passes. The taus come from u-muP's depth rule
(`keras_unitscale.ops.transformer_residual_taus`, or `decoder_residual_taus` with
cross-attention) given `(layer_index, num_layers)`, or are passed directly.
"""

import keras

from keras_unitscale import ops as uops
from keras_unitscale.backend import get_keras_mask
from keras_unitscale.layers import _weights
from keras_unitscale.layers.dropout import Dropout
from keras_unitscale.layers.transformer_block import TransformerBlockBase

_Block = TransformerBlockBase  # the base's old name


@keras.saving.register_keras_serializable(package="keras_unitscale")
class TransformerEncoderBlock(TransformerBlockBase):
    """Unit-scaled pre-norm transformer encoder block: self-attention, then an MLP.

    Args:
        num_heads: attention heads.
        intermediate_dim: hidden size of the MLP.
        key_dim: size of each head; defaults to `width // num_heads`.
        dropout: dropout on the attention probabilities and on each branch's output.
        activation: MLP activation (`"gelu"`; `"silu"` with `gated=True`; ...).
        gated: gated (GLU) MLP.
        normalization: `"layer_norm"` or `"rms_norm"` (pre-norm, no learnt gain or bias).
        normalization_epsilon: the norms' epsilon.
        layer_index, num_layers: the block's place in the stack, for u-muP's residual depth
            rule (default: a stack of one).
        residual_mult: the branches of the whole stack together add `residual_mult ** 2`
            times the embedding's variance to the residual stream (u-muP).
        residual_attn_ratio: std of what an attention branch adds relative to what an MLP
            branch adds (u-muP).
        tau_attn, tau_mlp: explicit residual weights (branch relative to skip) instead of
            the depth rule.
        attention_mult: u-muP attention multiplier (logits scaled `attention_mult / key_dim`).
        use_bias: biases in the projections (off by default, as in u-muP).
        constraint: constraint of the projections.
        rotary_max_wavelength: rotary position embeddings in self-attention if set (never in
            cross-attention).
        seed: seed of the dropouts.

    Call arguments:
        inputs: `[batch, length, width]`, unit-scaled (e.g. from an embedding).
        padding_mask: optional boolean `[batch, length]` (default: the inputs' Keras mask).
        attention_mask: optional boolean `[batch, length, length]`.
        training: enables dropout.

    Example:
    >>> import numpy as np
    >>> import keras_unitscale as ku
    >>> blocks = [ku.layers.TransformerEncoderBlock(4, 128, layer_index=i, num_layers=2)
    ...           for i in range(2)]
    >>> x = np.random.default_rng(0).standard_normal((2, 10, 64)).astype("float32")
    >>> for block in blocks:
    ...     x = block(x)
    >>> tuple(x.shape)
    (2, 10, 64)
    """

    def build(self, inputs_shape):
        if len(inputs_shape) != 3 or inputs_shape[-1] is None:
            raise ValueError(
                f"`inputs` must have shape [batch, length, width]; received {tuple(inputs_shape)}."
            )
        self.tau = self._resolve_taus()
        self.attention_norm = self._norm("attention_norm")
        self.self_attention = self._attention(int(inputs_shape[-1]), "self_attention")
        self.attention_dropout = Dropout(
            self.dropout, seed=self.seed, dtype=self.dtype_policy, name="attention_dropout"
        )
        self.attention_norm.build(inputs_shape)
        self.self_attention.build(inputs_shape, inputs_shape)
        self.mlp_norm.build(inputs_shape)
        self.mlp.build(inputs_shape)
        _weights.declare_depth(self, self.num_layers)

    def call(self, inputs, padding_mask=None, attention_mask=None, training=None):
        if padding_mask is None:
            padding_mask = get_keras_mask(inputs)
        mask = self._key_mask(padding_mask, attention_mask)

        def attend(r):
            h = self.attention_norm(r)
            h = self.self_attention(h, h, attention_mask=mask, training=training)
            return self.attention_dropout(h, training=training)

        x = self._branch(inputs, self.tau["attention"], attend)
        return self._mlp_branch(x, training)


@keras.saving.register_keras_serializable(package="keras_unitscale")
class TransformerDecoderBlock(TransformerBlockBase):
    """Unit-scaled pre-norm transformer decoder block: causal self-attention, optional
    cross-attention (built when first called with an `encoder_sequence`), then an MLP.

    Caches follow KerasHub's `TransformerDecoder`: `[batch, 2, length, num_heads, key_dim]`
    for self-attention (updated at `self_attention_cache_update_index`) and for
    cross-attention (computed when `cross_attention_cache_update_index=0`, reused when it is
    `None`). With a self-attention cache of length `S`, the output equals the full causal
    pass over `S` tokens (the attention scale depends on the number of keys).

    Args:
        As `TransformerEncoderBlock`, plus:
        tau_cross: explicit residual weight of the cross-attention branch (default
            `tau_attn`); with the depth rule, every cross-attention layer counts as one more
            attention branch (`keras_unitscale.ops.decoder_residual_taus`).

    Call arguments:
        decoder_sequence: `[batch, T, width]`.
        encoder_sequence: `[batch, S_enc, width_enc]`, for blocks with cross-attention.
        decoder_padding_mask: optional boolean `[batch, keys]` over the self-attention keys
            (`T`, or the cache length when decoding with a cache); default: the decoder
            sequence's Keras mask when no cache is given.
        decoder_attention_mask: optional boolean `[batch, T, keys]`.
        encoder_padding_mask: optional boolean `[batch, S_enc]` (default: the encoder
            sequence's Keras mask).
        encoder_attention_mask: optional boolean `[batch, T, S_enc]`.
        self_attention_cache, self_attention_cache_update_index: the self-attention cache.
        cross_attention_cache, cross_attention_cache_update_index: the cross-attention cache.
        use_causal_mask: causal self-attention (default true).
        training: enables dropout.

    Returns:
        `outputs`; with caches, `(outputs, self_attention_cache)` or, with cross-attention,
        `(outputs, self_attention_cache, cross_attention_cache)`.

    Example:
    >>> import numpy as np
    >>> import keras_unitscale as ku
    >>> block = ku.layers.TransformerDecoderBlock(2, 64, activation="silu", gated=True)
    >>> x = np.random.default_rng(0).standard_normal((2, 6, 32)).astype("float32")
    >>> full = block(x)
    >>> cache = np.zeros((2, 2, 6, 2, 16), "float32")
    >>> steps = []
    >>> for t in range(6):
    ...     out, cache = block(x[:, t:t + 1], self_attention_cache=cache,
    ...                        self_attention_cache_update_index=t)
    ...     steps.append(np.asarray(out))
    >>> bool(np.allclose(np.concatenate(steps, axis=1), np.asarray(full), atol=1e-4))
    True
    """

    def __init__(self, num_heads, intermediate_dim, tau_cross=None, **kwargs):
        if tau_cross is not None and kwargs.get("tau_attn") is None:
            raise ValueError("`tau_cross` needs `tau_attn` and `tau_mlp` as well.")
        super().__init__(num_heads, intermediate_dim, **kwargs)
        if tau_cross is not None:
            uops.residual_coefficients(tau_cross)  # validates
        self.tau_cross = None if tau_cross is None else float(tau_cross)

    def get_config(self):
        config = super().get_config()
        config.update(tau_cross=self.tau_cross)
        return config

    def build(self, decoder_sequence_shape, encoder_sequence_shape=None):
        shape = decoder_sequence_shape
        if len(shape) != 3 or shape[-1] is None:
            raise ValueError(
                f"`decoder_sequence` must have shape [batch, length, width]; received "
                f"{tuple(shape)}."
            )
        cross = encoder_sequence_shape is not None
        self.tau = self._resolve_taus(cross)
        dim = int(shape[-1])
        self.attention_norm = self._norm("attention_norm")
        self.self_attention = self._attention(dim, "self_attention")
        self.attention_dropout = Dropout(
            self.dropout, seed=self.seed, dtype=self.dtype_policy, name="attention_dropout"
        )
        self.attention_norm.build(shape)
        self.self_attention.build(shape, shape)
        self.cross_attention = None
        if cross:
            if len(encoder_sequence_shape) != 3 or encoder_sequence_shape[-1] is None:
                raise ValueError(
                    "`encoder_sequence` must have shape [batch, length, width]; received "
                    f"{tuple(encoder_sequence_shape)}."
                )
            self.cross_attention_norm = self._norm("cross_attention_norm")
            # Decoder and encoder positions are unrelated: no rotary embedding here.
            self.cross_attention = self._attention(dim, "cross_attention", rotary=False)
            self.cross_attention_dropout = Dropout(
                self.dropout, seed=self.seed, dtype=self.dtype_policy,
                name="cross_attention_dropout",
            )
            self.cross_attention_norm.build(shape)
            self.cross_attention.build(shape, encoder_sequence_shape)
        self.mlp_norm.build(shape)
        self.mlp.build(shape)
        _weights.declare_depth(self, self.num_layers)

    def call(
        self,
        decoder_sequence,
        encoder_sequence=None,
        decoder_padding_mask=None,
        decoder_attention_mask=None,
        encoder_padding_mask=None,
        encoder_attention_mask=None,
        self_attention_cache=None,
        self_attention_cache_update_index=None,
        cross_attention_cache=None,
        cross_attention_cache_update_index=None,
        use_causal_mask=True,
        training=None,
    ):
        has_cross = self.cross_attention is not None
        if has_cross != (encoder_sequence is not None):
            raise ValueError(
                "This block was built "
                + ("with" if has_cross else "without")
                + " cross-attention: call it "
                + ("with" if has_cross else "without")
                + " an `encoder_sequence`, as at its first call."
            )
        if has_cross and (self_attention_cache is None) != (cross_attention_cache is None):
            raise ValueError(
                "With cross-attention, `self_attention_cache` and `cross_attention_cache` must "
                "both be given or both be None."
            )
        if decoder_padding_mask is None and self_attention_cache is None:
            decoder_padding_mask = get_keras_mask(decoder_sequence)
        self_mask = self._key_mask(decoder_padding_mask, decoder_attention_mask)
        caches = {}

        def self_attend(r):
            h = self.attention_norm(r)
            out = self.self_attention(
                h, h, attention_mask=self_mask, use_causal_mask=use_causal_mask,
                cache=self_attention_cache, cache_update_index=self_attention_cache_update_index,
                training=training,
            )
            if self_attention_cache is not None:
                out, caches["self"] = out
            return self.attention_dropout(out, training=training)

        x = self._branch(decoder_sequence, self.tau["attention"], self_attend)

        if has_cross:
            if encoder_padding_mask is None:
                encoder_padding_mask = get_keras_mask(encoder_sequence)
            cross_mask = self._key_mask(encoder_padding_mask, encoder_attention_mask)

            def cross_attend(r):
                h = self.cross_attention_norm(r)
                out = self.cross_attention(
                    h, encoder_sequence, attention_mask=cross_mask,
                    cache=cross_attention_cache,
                    cache_update_index=cross_attention_cache_update_index,
                    training=training,
                )
                if cross_attention_cache is not None:
                    out, caches["cross"] = out
                return self.cross_attention_dropout(out, training=training)

            x = self._branch(x, self.tau["cross_attention"], cross_attend)

        x = self._mlp_branch(x, training)
        if self_attention_cache is None:
            return x
        if has_cross:
            return x, caches["self"], caches["cross"]
        return x, caches["self"]
