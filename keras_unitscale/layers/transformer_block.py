"""The base of the pre-norm transformer blocks (`keras_unitscale.layers.transformer`): their
shared arguments, the MLP branch and the norms, the attention layers they make, the choice of
residual taus (explicit, or u-muP's depth rule from `keras_unitscale.ops.residual`), the
residual arithmetic of a branch and the key mask."""

import keras
from keras import ops

from keras_unitscale import ops as uops
from keras_unitscale.layers._validation import positive_int
from keras_unitscale.layers.attention import MultiHeadAttention
from keras_unitscale.layers.dropout import Dropout
from keras_unitscale.layers.mlp import MLP
from keras_unitscale.layers.normalization import check_normalization, parameter_free_norm
from keras_unitscale.ops.dropout import validate_rate


class TransformerBlockBase(keras.layers.Layer):
    """Shared arguments, sublayers and residual arithmetic of the encoder and decoder blocks
    (`keras_unitscale.layers.transformer`); the arguments are documented there."""

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
        self.normalization = check_normalization(normalization)
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
        return parameter_free_norm(
            self.normalization, self.normalization_epsilon, self.dtype_policy, name
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
