"""Unit-scaled multi-head attention, with a key/value cache for incremental decoding."""

import keras
from keras import ops

from keras_unitscale import ops as uops
from keras_unitscale.layers import _keras_arguments, _weights
from keras_unitscale.layers._attention_checks import (
    check_attention_axes,
    check_cache,
    check_cache_index,
    check_flash_attention,
    check_masks,
    check_rotary,
    merge_masks,
    output_dim,
    sliding_window_mask,
)

from keras_unitscale.layers._quantize import QuantizableKernels
from keras_unitscale.ops.formats import attach_fp8, for_matmul, fp8_from_config, fp8_to_config
from keras_unitscale.layers._validation import positive_int, positive_number
from keras_unitscale.ops.dropout import validate_rate

_check_cache_index, _check_masks = check_cache_index, check_masks  # the names' old home


def _clone(initializer):
    return initializer.__class__.from_config(initializer.get_config())


# The attribute holding each projection's kernel, by weight-name prefix.
_ATTRIBUTES = {"query": "query", "key": "key", "value": "value", "attention_output": "output"}


@keras.saving.register_keras_serializable(package="keras_unitscale")
class MultiHeadAttention(QuantizableKernels, keras.layers.Layer):
    """Unit-scaled multi-head attention: drop-in for `keras.layers.MultiHeadAttention`.

    Queries, keys and values are projected by unit-scaled linear maps (weights N(0, 1)),
    attention logits are scaled by `mult / key_dim` (u-muP) and the attention output by the
    rule in `keras_unitscale.ops.attention`, so that output, value and input gradients start
    near unit. Padding masks come from the Keras masks of `query` and `value` (or `key`), as
    in Keras. The value bias is added after attention (the same function, as probabilities
    sum to one) so that the output scale does not amplify it; cached values exclude it.
    Self-attention (the same tensor as `query` and `value`, no `key`) without biases or FP8
    projects queries, keys and values with one matmul on the three kernels side by side:
    the same numbers, in one larger matmul forward and backward instead of three.

    Args:
        num_heads: number of attention heads.
        key_dim: size of each query/key head.
        value_dim: size of each value head; defaults to `key_dim`.
        dropout: dropout rate on the attention probabilities.
        use_bias: biases in the four projections.
        output_shape: size of the output's last axis (an int or a 1-tuple); defaults to the
            query's.
        mult: u-muP attention multiplier; the softmax temperature is `key_dim / mult`.
        constraint: constraint of the projections (see `keras_unitscale.ops.constraints`).
        rotary_max_wavelength: if set, rotary position embeddings with this maximum
            wavelength are applied to queries and keys (positions start at the cache index).
        seed: seed of the dropout.
        attention_axes: `None` only (the sequence axis); other axes are refused.
        sliding_window: as in Keras, `None` or a positive int `w`: each query attends only
            to keys less than `w` positions away (combine with `use_causal_mask` for a causal
            window). The output scale follows the keys each query really attends to.
        flash_attention: as in Keras: `None` picks the fused kernel where it serves (cuDNN
            flash attention under JAX on NVIDIA GPUs), `True` always takes the fused path
            (no dropout, no returned scores), `False` the einsum path. Same function.
        use_gate: `False` only: Keras' gated attention multiplies the output by a sigmoid
            gate of RMS about 0.54, whose scale is not derived here.
        kernel_initializer, bias_initializer: default N(0, 1) and zeros; an initializer that
            does not draw unit-variance weights is warned about (see `Dense`).
        kernel_regularizer, bias_regularizer, activity_regularizer, kernel_constraint,
            bias_constraint: as in Keras, for the four projections.

    Call arguments:
        query: `[batch, T, dim]`.
        value: `[batch, S, dim]`.
        key: optional `[batch, S, dim]`; defaults to `value`.
        attention_mask: optional boolean `[batch, T, S]`, `True` where attention is allowed.
        use_causal_mask: mask keys after each query (query `i` sits at position
            `cache_update_index + i` when decoding with a cache).
        return_attention_scores: also return the probabilities `[batch, heads, T, S]`.
        training: enables dropout.
        cache: optional `[batch, 2, max_length, num_heads, key_dim]`, projected keys (index 0)
            and values (index 1), KerasHub's `CachedMultiHeadAttention` layout. Requires
            `value_dim == key_dim`. With a cache, keys padding is given by `attention_mask`
            `[batch, T, max_length]`; the Keras masks of `value` and `key` are not used.
        cache_update_index: where the projections of `key`/`value` are written into `cache`
            (with `ops.slice_update`); `None` uses the cache as it is.

    Returns:
        `output`, `(output, scores)`, `(output, cache)` or `(output, scores, cache)`.

    Example:
    >>> import numpy as np
    >>> import keras_unitscale as ku
    >>> mha = ku.layers.MultiHeadAttention(num_heads=2, key_dim=16)
    >>> x = np.random.default_rng(0).standard_normal((3, 10, 32)).astype("float32")
    >>> tuple(mha(x, x, use_causal_mask=True).shape)
    (3, 10, 32)
    >>> cache = np.zeros((3, 2, 10, 2, 16), "float32")
    >>> out, cache = mha(x[:, :1], x[:, :1], cache=cache, cache_update_index=0,
    ...                  use_causal_mask=True)
    >>> tuple(out.shape), tuple(cache.shape)
    ((3, 1, 32), (3, 2, 10, 2, 16))
    """

    # Self-attention without biases or FP8 projects q, k and v with one matmul on the
    # concatenated kernels (same scales, same numbers up to float rounding).
    _fuse_projections = True

    def __init__(
        self,
        num_heads,
        key_dim,
        value_dim=None,
        dropout=0.0,
        use_bias=True,
        output_shape=None,
        mult=1.0,
        constraint="to_output_scale",
        rotary_max_wavelength=None,
        seed=None,
        attention_axes=None,
        sliding_window=None,
        flash_attention=None,
        kernel_initializer=None,
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        kernel_constraint=None,
        bias_constraint=None,
        **kwargs,
    ):
        fp8 = kwargs.pop("fp8", None)  # a saved FP8 setting (keras_unitscale.precision)
        _keras_arguments.refuse(kwargs, "MultiHeadAttention", {
            "use_gate": "gated attention multiplies the attention output by "
            "`sigmoid(query @ w_gate)`, of RMS about 0.54 for unit-normal logits, and the "
            "gate's scale and gradient rule are not derived here (the output would start "
            "about half of unit scale).",
        })
        super().__init__(**kwargs)
        check_attention_axes(attention_axes)
        self.kernel_initializer = keras.initializers.get(
            kernel_initializer or keras.initializers.RandomNormal(stddev=1.0)
        )
        self.bias_initializer = keras.initializers.get(bias_initializer)
        _weights.set_kernel_and_bias_options(
            self, kernel_regularizer, bias_regularizer, kernel_constraint, bias_constraint
        )
        self._user_initializer = kernel_initializer is not None
        self.num_heads = positive_int(num_heads, "num_heads")
        self.key_dim = positive_int(key_dim, "key_dim")
        self.value_dim = self.key_dim if value_dim is None else positive_int(value_dim, "value_dim")
        self.dropout = validate_rate(dropout, "dropout")
        self.use_bias = bool(use_bias)
        self.output_dim = output_dim(output_shape)
        self.mult = positive_number(mult, "mult")
        self.constraint = uops.validate_constraint(constraint)
        self.rotary_max_wavelength = check_rotary(rotary_max_wavelength, self.key_dim)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed) if self.dropout > 0 else None
        if sliding_window is not None:
            sliding_window = positive_int(sliding_window, "sliding_window")
        self.sliding_window = sliding_window
        self.flash_attention = check_flash_attention(flash_attention, self.dropout, dropout)
        self.supports_masking = True
        # FP8 setting (see keras_unitscale.ops.linear, keras_unitscale.precision), or None.
        attach_fp8(self, fp8_from_config(fp8))

    def build(self, query_shape, value_shape, key_shape=None):
        key_shape = value_shape if key_shape is None else key_shape
        for name, shape in (("query", query_shape), ("value", value_shape), ("key", key_shape)):
            if len(shape) != 3 or shape[-1] is None:
                raise ValueError(
                    f"`{name}` must have shape [batch, length, dim] with a known dim; "
                    f"received shape {tuple(shape)}."
                )
        if None not in (key_shape[1], value_shape[1]) and key_shape[1] != value_shape[1]:
            raise ValueError(
                "`key` and `value` must have the same length; received shapes "
                f"{tuple(key_shape)} and {tuple(value_shape)}."
            )
        h = self.num_heads
        self.query_kernel, self.query_bias = self._projection(
            "query", query_shape[-1], h * self.key_dim
        )
        self.key_kernel, self.key_bias = self._projection("key", key_shape[-1], h * self.key_dim)
        self.value_kernel, self.value_bias = self._projection(
            "value", value_shape[-1], h * self.value_dim
        )
        out_dim = self.output_dim or query_shape[-1]
        self.output_kernel, self.output_bias = self._projection(
            "attention_output", h * self.value_dim, out_dim
        )

    def _projection(self, name, fan_in, fan_out):
        kernel = self.add_kernel(
            f"{name}_kernel",
            (int(fan_in), int(fan_out)),
            channel_axis=1,
            attribute=f"{_ATTRIBUTES[name]}_kernel",
            # A new initializer per projection: one unseeded instance called four times
            # would draw four identical kernels.
            initializer=_clone(self.kernel_initializer),
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
        )
        _weights.declare(kernel, "weight", int(fan_in))
        if self._user_initializer and self.quantization_mode is None:
            _weights.warn_if_not_unit(kernel, "kernel_initializer", self)
        bias = (
            _weights.declare(self.add_weight(
                name=f"{name}_bias", shape=(int(fan_out),),
                initializer=_clone(self.bias_initializer),
                regularizer=self.bias_regularizer, constraint=self.bias_constraint,
            ), "bias")
            if self.use_bias
            else None
        )
        return kernel, bias

    def _project(self, x, kernel, bias, head_dim):
        kernel = self.kernel_value(kernel)
        y = uops.linear(x, kernel, bias, constraint=self.constraint, fp8=self.fp8)
        return ops.reshape(y, ops.shape(y)[:-1] + (self.num_heads, head_dim))

    def _fusable_projections(self):
        """Whether self-attention's three projections can run as one matmul with the same
        numbers: no biases, no FP8 simulation, and a constraint under which a projection's
        scales do not depend on its output width (`to_output_scale`: `fan_in ** -0.5` for the
        output and the input gradient alike)."""
        return (
            self._fuse_projections
            and self.query_bias is None
            and self.key_bias is None
            and self.fp8 is None
            and self.constraint == "to_output_scale"
        )

    def _project_self(self, x):
        """Query, key and value of `x` from one `linear` on the concatenated kernels: one
        larger matmul forward, one for the input gradient (the sum of the three) and one for
        the weight gradients, where separate projections take three of each."""
        kernels = [self.kernel_value(f"{n}_kernel") for n in ("query", "key", "value")]
        widths = [int(k.shape[-1]) for k in kernels]
        y = uops.linear(
            x, ops.concatenate(kernels, axis=-1), constraint=self.constraint, fp8=self.fp8
        )
        q, k, v = ops.split(y, [widths[0], widths[0] + widths[1]], axis=-1)
        heads = ops.shape(y)[:-1] + (self.num_heads,)
        return (
            ops.reshape(q, heads + (self.key_dim,)),
            ops.reshape(k, heads + (self.key_dim,)),
            ops.reshape(v, heads + (self.value_dim,)),
        )

    def _rotate(self, x, start_index):
        if self.rotary_max_wavelength is None:
            return x
        return uops.rotary_embedding(x, start_index, self.rotary_max_wavelength)

    def call(
        self,
        query,
        value,
        key=None,
        query_mask=None,
        value_mask=None,
        key_mask=None,
        attention_mask=None,
        use_causal_mask=False,
        return_attention_scores=False,
        training=None,
        cache=None,
        cache_update_index=None,
    ):
        self_attention = key is None and value is query
        if key is None:
            key = value
            key_mask = None
        start = 0 if cache_update_index is None else cache_update_index
        if cache is None and cache_update_index is None and self_attention and (
            self._fusable_projections()
        ):
            q, k, v = self._project_self(query)
            q, k = self._rotate(q, 0), self._rotate(k, 0)
        else:
            q = self._project(query, "query_kernel", self.query_bias, self.key_dim)
            q = self._rotate(q, start)
            k = v = None

        if k is not None:
            pass  # projected with the query
        elif cache is None:
            if cache_update_index is not None:
                raise ValueError(
                    "`cache_update_index` needs a `cache`; received cache=None and "
                    f"cache_update_index={cache_update_index!r}."
                )
            k = self._rotate(self._project(key, "key_kernel", self.key_bias, self.key_dim), 0)
            v = self._project(value, "value_kernel", None, self.value_dim)
        else:
            check_cache(cache, self.num_heads, self.key_dim, self.value_dim)
            value_mask = key_mask = None  # they describe the new entries, not the cache
            k, v = cache[:, 0, ...], cache[:, 1, ...]
            if cache_update_index is not None:
                check_cache_index(cache_update_index, key.shape[1], cache.shape[2])
                k_new = self._project(key, "key_kernel", self.key_bias, self.key_dim)
                k_new = self._rotate(k_new, start)
                v_new = self._project(value, "value_kernel", None, self.value_dim)
                index = [0, cache_update_index, 0, 0]
                k = ops.slice_update(k, index, ops.cast(k_new, k.dtype))
                v = ops.slice_update(v, index, ops.cast(v_new, v.dtype))
                cache = ops.stack((k, v), axis=1)
            k, v = ops.cast(k, q.dtype), ops.cast(v, q.dtype)

        check_masks(query.shape[1], value.shape[1], k.shape[1], query_mask=query_mask,
                    value_mask=value_mask, key_mask=key_mask, attention_mask=attention_mask)
        mask = merge_masks(query_mask, value_mask, key_mask, attention_mask)
        out = uops.dot_product_attention(
            q,
            k,
            v,
            mask=sliding_window_mask(mask, q.shape[1], k.shape[1], start, self.sliding_window),
            is_causal=use_causal_mask,
            query_offset=start,
            mult=self.mult,
            dropout_rate=self.dropout if training else 0.0,
            seed=self.seed_generator,
            return_scores=return_attention_scores,
            value_bias=None
            if self.value_bias is None
            else ops.reshape(self.value_bias, (self.num_heads, self.value_dim)),
            implementation=self._implementation(return_attention_scores),
        )
        out, scores = out if return_attention_scores else (out, None)
        out = ops.reshape(out, ops.shape(out)[:-2] + (self.num_heads * self.value_dim,))
        out = uops.linear(
            out, self.kernel_value("output_kernel"), self.output_bias,
            constraint=self.constraint, fp8=for_matmul(self.fp8, "attention_output"),
        )
        results = (out,) + ((scores,) if return_attention_scores else ()) + (
            (cache,) if cache is not None else ()
        )
        return results[0] if len(results) == 1 else results

    def _implementation(self, return_attention_scores):
        flash = self.flash_attention
        if flash is None:
            flash = keras.config.is_flash_attention_enabled()
        if flash and return_attention_scores:
            raise ValueError(
                "`return_attention_scores=True` needs the attention probabilities, which "
                "`flash_attention=True` never materialises; use flash_attention=None or False."
            )
        return {None: None, True: "fused", False: "einsum"}[flash]

    def get_config(self):
        config = super().get_config()
        config.update(
            num_heads=self.num_heads,
            key_dim=self.key_dim,
            value_dim=self.value_dim,
            dropout=self.dropout,
            use_bias=self.use_bias,
            output_shape=self.output_dim,
            mult=self.mult,
            constraint=self.constraint,
            rotary_max_wavelength=self.rotary_max_wavelength,
            seed=self.seed,
            sliding_window=self.sliding_window,
            flash_attention=self.flash_attention,
        )
        config.update(_weights.kernel_and_bias_config(self))
        if self.fp8 is not None:
            config["fp8"] = fp8_to_config(self.fp8)
        return _weights.serialize(
            config, kernel_initializer=self.kernel_initializer,
            bias_initializer=self.bias_initializer,
        )
