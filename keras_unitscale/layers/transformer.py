"""Pre-norm transformer encoder and decoder blocks, unit-scaled (u-muP residual rule).

Each branch (self-attention, cross-attention, MLP) reads a normalised copy of the residual
stream and is merged back by `residual_split` / `residual_add` with its own `tau`, so the
stream stays unit in both passes. The taus come from u-muP's depth rule
(`keras_unitscale.ops.transformer_residual_taus`, or `decoder_residual_taus` with
cross-attention) given `(layer_index, num_layers)`, or are passed directly.
"""

import keras
from keras import ops

from keras_unitscale import ops as uops
from keras_unitscale.backend import get_keras_mask
from keras_unitscale.layers import _weights
from keras_unitscale.layers._validation import positive_int
from keras_unitscale.layers.attention import MultiHeadAttention
from keras_unitscale.layers.dropout import Dropout
from keras_unitscale.layers.mlp import MLP
from keras_unitscale.layers.normalization import LayerNormalization, RMSNormalization
from keras_unitscale.ops.dropout import validate_rate

_NORMALIZATIONS = ("layer_norm", "rms_norm")


class _Block(keras.layers.Layer):
    """Shared arguments, sublayers and residual arithmetic of the two blocks."""

    def __init__(
        self,
        num_heads,
        intermediate_dim,
        key_dim=None,
        dropout=0.0,
        activation="gelu",
        gated=False,
        normalization="layer_norm",
        normalization_epsilon=1e-5,
        layer_index=None,
        num_layers=None,
        residual_mult=1.0,
        residual_attn_ratio=1.0,
        tau_attn=None,
        tau_mlp=None,
        attention_mult=1.0,
        use_bias=False,
        constraint="to_output_scale",
        rotary_max_wavelength=None,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_heads = positive_int(num_heads, "num_heads")
        self.intermediate_dim = positive_int(intermediate_dim, "intermediate_dim")
        self.key_dim = None if key_dim is None else positive_int(key_dim, "key_dim")
        self.dropout = validate_rate(dropout, "dropout")
        self.activation = activation
        self.gated = bool(gated)
        if normalization not in _NORMALIZATIONS:
            raise ValueError(
                f"`normalization` must be one of {list(_NORMALIZATIONS)}; received "
                f"{normalization!r}."
            )
        self.normalization = normalization
        self.normalization_epsilon = float(normalization_epsilon)
        self.residual_mult = float(residual_mult)
        self.residual_attn_ratio = float(residual_attn_ratio)
        self.layer_index, self.num_layers = self._check_depth(
            layer_index, num_layers, tau_attn, tau_mlp
        )
        self.tau_attn = None if tau_attn is None else float(tau_attn)
        self.tau_mlp = None if tau_mlp is None else float(tau_mlp)
        self.attention_mult = float(attention_mult)
        self.use_bias = bool(use_bias)
        self.constraint = uops.validate_constraint(constraint)
        self.rotary_max_wavelength = rotary_max_wavelength
        self.seed = seed
        self.supports_masking = True
        self.mlp = MLP(
            self.intermediate_dim, activation=activation, gated=self.gated,
            use_bias=self.use_bias, constraint=self.constraint, dtype=self.dtype_policy,
            name="mlp",
        )
        self.mlp_norm = self._norm("mlp_norm")
        self.mlp_dropout = Dropout(
            self.dropout, seed=seed, dtype=self.dtype_policy, name="mlp_dropout"
        )
        self.self_attention = None  # made in build, once the width is known

    def _check_depth(self, layer_index, num_layers, *taus):
        """Validates the residual arguments; returns `(layer_index, num_layers)`."""
        given = [t for t in taus if t is not None]
        if given:
            if layer_index is not None or num_layers is not None:
                raise ValueError(
                    "Pass either explicit taus (`tau_attn`, `tau_mlp`, ...) or "
                    "(`layer_index`, `num_layers`), not both; received layer_index="
                    f"{layer_index!r}, num_layers={num_layers!r}."
                )
            if taus[0] is None or taus[1] is None:
                raise ValueError(
                    f"`tau_attn` and `tau_mlp` must be given together; received {taus[:2]!r}."
                )
            for t in given:
                uops.residual_coefficients(t)  # validates
            return None, None
        num_layers = 1 if num_layers is None else positive_int(num_layers, "num_layers")
        layer_index = 0 if layer_index is None else layer_index
        if isinstance(layer_index, bool) or not isinstance(layer_index, int) or not (
            0 <= layer_index < num_layers
        ):
            raise ValueError(
                f"`layer_index` must be an int in [0, num_layers={num_layers}); received "
                f"{layer_index!r}."
            )
        uops.transformer_residual_taus(1, self.residual_mult, self.residual_attn_ratio)
        return layer_index, num_layers

    def _norm(self, name):
        if self.normalization == "rms_norm":
            return RMSNormalization(
                epsilon=self.normalization_epsilon, scale=False, dtype=self.dtype_policy, name=name
            )
        return LayerNormalization(
            epsilon=self.normalization_epsilon, center=False, scale=False, dtype=self.dtype_policy,
            name=name,
        )

    def _attention(self, dim, name, rotary=True):
        key_dim = self.key_dim or dim // self.num_heads
        if key_dim < 1:
            raise ValueError(
                f"The model width {dim} is smaller than `num_heads` {self.num_heads}; pass "
                "`key_dim`."
            )
        return MultiHeadAttention(
            self.num_heads, key_dim, dropout=self.dropout, use_bias=self.use_bias,
            mult=self.attention_mult, constraint=self.constraint,
            rotary_max_wavelength=self.rotary_max_wavelength if rotary else None, seed=self.seed,
            dtype=self.dtype_policy, name=name,
        )

    def _resolve_taus(self, cross_attention=False):
        """`{branch: tau}` from the explicit taus or u-muP's depth rule."""
        if self.tau_attn is not None:
            taus = {"attention": self.tau_attn, "mlp": self.tau_mlp}
            if cross_attention:
                cross = getattr(self, "tau_cross", None)
                taus["cross_attention"] = self.tau_attn if cross is None else cross
            return taus
        if not cross_attention:
            rule = uops.transformer_residual_taus(
                self.num_layers, self.residual_mult, self.residual_attn_ratio
            )
            return dict(zip(("attention", "mlp"), rule[self.layer_index]))
        rule = uops.decoder_residual_taus(
            self.num_layers, self.residual_mult, self.residual_attn_ratio
        )
        return dict(zip(("attention", "cross_attention", "mlp"), rule[self.layer_index]))

    def _branch(self, x, tau, fn):
        residual, skip = uops.residual_split(x, tau)
        return uops.residual_add(fn(residual), skip, tau)

    def _mlp_branch(self, x, training):
        def mlp(r):
            h = self.mlp(self.mlp_norm(r), training=training)
            return self.mlp_dropout(h, training=training)

        return self._branch(x, self.tau["mlp"], mlp)

    @staticmethod
    def _key_mask(padding_mask, attention_mask):
        """`[batch, 1, S]` from a padding mask, merged with an optional `[batch, T, S]`."""
        mask = None
        if padding_mask is not None:
            if len(padding_mask.shape) != 2:
                raise ValueError(
                    "A padding mask must have shape [batch, length]; received shape "
                    f"{tuple(padding_mask.shape)}."
                )
            mask = ops.expand_dims(ops.cast(padding_mask, "bool"), 1)
        if attention_mask is not None:
            if len(attention_mask.shape) != 3:
                raise ValueError(
                    "An attention mask must have shape [batch, target_length, source_length]; "
                    f"received shape {tuple(attention_mask.shape)}."
                )
            attention_mask = ops.cast(attention_mask, "bool")
            mask = attention_mask if mask is None else ops.logical_and(mask, attention_mask)
        return mask

    def get_config(self):
        config = super().get_config()
        config.update(
            num_heads=self.num_heads,
            intermediate_dim=self.intermediate_dim,
            key_dim=self.key_dim,
            dropout=self.dropout,
            activation=self.activation,
            gated=self.gated,
            normalization=self.normalization,
            normalization_epsilon=self.normalization_epsilon,
            layer_index=self.layer_index,
            num_layers=self.num_layers,
            residual_mult=self.residual_mult,
            residual_attn_ratio=self.residual_attn_ratio,
            tau_attn=self.tau_attn,
            tau_mlp=self.tau_mlp,
            attention_mult=self.attention_mult,
            use_bias=self.use_bias,
            constraint=self.constraint,
            rotary_max_wavelength=self.rotary_max_wavelength,
            seed=self.seed,
        )
        return config


@keras.saving.register_keras_serializable(package="keras_unitscale")
class TransformerEncoderBlock(_Block):
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
class TransformerDecoderBlock(_Block):
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
