"""Unit-scaled multi-head attention, with a key/value cache for incremental decoding."""

import keras
import numpy as np
from keras import ops

from keras_unitscale import ops as uops
from keras_unitscale._validation import shapes_match, static_dim
from keras_unitscale.backend import concrete_value
from keras_unitscale.layers import _keras_arguments, _weights
from keras_unitscale.layers._quantize import QuantizableKernels
from keras_unitscale.ops.formats import attach_fp8, for_matmul, fp8_from_config, fp8_to_config
from keras_unitscale.layers._validation import positive_int, positive_number
from keras_unitscale.ops.dropout import validate_rate


def _clone(initializer):
    return initializer.__class__.from_config(initializer.get_config())


def _output_dim(output_shape):
    if output_shape is None:
        return None
    if isinstance(output_shape, (list, tuple)) and len(output_shape) == 1:
        output_shape = output_shape[0]
    return positive_int(output_shape, "output_shape")


# The attribute holding each projection's kernel, by weight-name prefix.
_ATTRIBUTES = {"query": "query", "key": "key", "value": "value", "attention_output": "output"}


def _check_masks(target, value_length, source, **masks):
    """Static mask shapes (checked under `jit` too): `[batch, target]` for `query_mask`,
    `[batch, value_length]` for `value_mask`/`key_mask`, `[batch, target, source]` for
    `attention_mask` (`None` matches anything, 1 broadcasts)."""
    expected = {"query_mask": (target,), "value_mask": (value_length,),
                "key_mask": (value_length,), "attention_mask": (target, source)}
    for name, mask in masks.items():
        if mask is None:
            continue
        shape = tuple(mask.shape)
        # A dimension of 1 broadcasts (the backbones' `[batch, 1, source]` padding masks).
        given = tuple(None if static_dim(d) == 1 else d for d in shape[1:])
        if len(shape) != 1 + len(expected[name]) or not shapes_match(given, expected[name]):
            raise ValueError(
                f"`{name}` must have shape [batch, {', '.join(map(str, expected[name]))}] "
                f"to match the query, key and value; received shape {shape}."
            )


def _check_cache_index(cache_update_index, length, cache_length):
    """A concrete `cache_update_index` must leave room for the `length` new entries (past
    the cache, the update would write the last slot); a traced one cannot be checked."""
    index = (cache_update_index if isinstance(cache_update_index, int)
             else concrete_value(cache_update_index))
    length, cache_length = static_dim(length), static_dim(cache_length)
    if index is None or length is None or cache_length is None:
        return
    index = int(np.asarray(index).reshape(()))
    if not 0 <= index <= int(cache_length) - int(length):
        raise ValueError(
            f"`cache_update_index` must be in [0, {int(cache_length) - int(length)}] to write "
            f"{int(length)} entries into a cache of {int(cache_length)} positions; received "
            f"{index}."
        )


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
        if attention_axes not in (None, 1, -2, (1,), (-2,), [1], [-2]):
            raise ValueError(
                "`attention_axes` must be None (attend over the sequence axis of [batch, "
                "length, dim] inputs); received "
                f"{attention_axes!r}. Unit-scaled attention takes its output scale from the "
                "keys each query attends to along one sequence axis."
            )
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
        self.output_dim = _output_dim(output_shape)
        self.mult = positive_number(mult, "mult")
        self.constraint = uops.validate_constraint(constraint)
        if rotary_max_wavelength is not None:
            if not isinstance(rotary_max_wavelength, (int, float)) or rotary_max_wavelength <= 1:
                raise ValueError(
                    "`rotary_max_wavelength` must be None or a number > 1; received "
                    f"{rotary_max_wavelength!r}."
                )
            if self.key_dim % 2:
                raise ValueError(
                    f"Rotary embeddings need an even `key_dim`; received {self.key_dim}."
                )
        self.rotary_max_wavelength = rotary_max_wavelength
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed) if self.dropout > 0 else None
        if sliding_window is not None:
            sliding_window = positive_int(sliding_window, "sliding_window")
        self.sliding_window = sliding_window
        if flash_attention not in (None, True, False):
            raise ValueError(
                f"`flash_attention` must be None, True or False; received {flash_attention!r}."
            )
        if flash_attention and self.dropout > 0:
            raise ValueError(
                "`flash_attention=True` cannot apply dropout to the attention probabilities "
                f"(the fused kernel never materialises them); received dropout={dropout!r}. "
                "Set dropout=0.0 or flash_attention=None."
            )
        self.flash_attention = flash_attention
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
            self._check_cache(cache)
            value_mask = key_mask = None  # they describe the new entries, not the cache
            k, v = cache[:, 0, ...], cache[:, 1, ...]
            if cache_update_index is not None:
                _check_cache_index(cache_update_index, key.shape[1], cache.shape[2])
                k_new = self._project(key, "key_kernel", self.key_bias, self.key_dim)
                k_new = self._rotate(k_new, start)
                v_new = self._project(value, "value_kernel", None, self.value_dim)
                index = [0, cache_update_index, 0, 0]
                k = ops.slice_update(k, index, ops.cast(k_new, k.dtype))
                v = ops.slice_update(v, index, ops.cast(v_new, v.dtype))
                cache = ops.stack((k, v), axis=1)
            k, v = ops.cast(k, q.dtype), ops.cast(v, q.dtype)

        _check_masks(query.shape[1], value.shape[1], k.shape[1], query_mask=query_mask,
                     value_mask=value_mask, key_mask=key_mask, attention_mask=attention_mask)
        mask = self._merge_masks(query_mask, value_mask, key_mask, attention_mask)
        out = uops.dot_product_attention(
            q,
            k,
            v,
            mask=self._sliding_window_mask(mask, q.shape[1], k.shape[1], start),
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

    def _sliding_window_mask(self, mask, query_length, key_length, start):
        """`mask` and Keras' band `|position(query) - position(key)| < sliding_window`
        (`[1, T, S]`, queries at `start + i`), or `mask` without a window."""
        if self.sliding_window is None:
            return mask
        i = ops.arange(query_length, dtype="int32")[:, None] + ops.cast(start, "int32")
        j = ops.arange(key_length, dtype="int32")[None, :]
        band = ops.less(ops.abs(i - j), self.sliding_window)[None]
        return band if mask is None else ops.logical_and(ops.cast(mask, "bool"), band)

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

    def _check_cache(self, cache):
        expected = (2, None, self.num_heads, self.key_dim)
        shape = tuple(cache.shape)
        if (
            len(shape) != 5
            or self.value_dim != self.key_dim
            or any(e is not None and s is not None and s != e for s, e in zip(shape[1:], expected))
        ):
            raise ValueError(
                "`cache` must have shape [batch, 2, max_length, num_heads, key_dim] = "
                f"[batch, 2, max_length, {self.num_heads}, {self.key_dim}] (and needs "
                f"value_dim == key_dim, here {self.value_dim} and {self.key_dim}); "
                f"received shape {shape}."
            )

    @staticmethod
    def _merge_masks(query_mask, value_mask, key_mask, attention_mask):
        mask = None
        if attention_mask is not None:
            if len(attention_mask.shape) != 3:
                raise ValueError(
                    "`attention_mask` must have shape [batch, target_length, source_length]; "
                    f"received shape {tuple(attention_mask.shape)}."
                )
            mask = ops.cast(attention_mask, "bool")
        for m, axis in ((query_mask, -1), (value_mask, -2), (key_mask, -2)):
            if m is not None:
                m = ops.expand_dims(ops.cast(m, "bool"), axis)
                mask = m if mask is None else ops.logical_and(mask, m)
        return mask

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
