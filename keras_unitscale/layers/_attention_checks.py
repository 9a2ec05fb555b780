"""What `MultiHeadAttention` checks and combines: its constructor arguments; Keras' query,
value, key and attention masks (static shapes, checked under `jit` too) merged into one
boolean mask, and a sliding-window band; a key/value cache and its update index."""

import numpy as np
from keras import ops

from keras_unitscale._validation import shapes_match, static_dim
from keras_unitscale.backend import concrete_value
from keras_unitscale.layers._validation import positive_int


# Arguments ---------------------------------------------------------------------------------


def output_dim(output_shape):
    """`output_shape` (None, an int, or a one-element shape) as a positive int or None."""
    if output_shape is None:
        return None
    if isinstance(output_shape, (list, tuple)) and len(output_shape) == 1:
        output_shape = output_shape[0]
    return positive_int(output_shape, "output_shape")


def check_attention_axes(attention_axes):
    """Only the sequence axis of `[batch, length, dim]` inputs."""
    if attention_axes not in (None, 1, -2, (1,), (-2,), [1], [-2]):
        raise ValueError(
            "`attention_axes` must be None (attend over the sequence axis of [batch, "
            "length, dim] inputs); received "
            f"{attention_axes!r}. Unit-scaled attention takes its output scale from the "
            "keys each query attends to along one sequence axis."
        )


def check_rotary(rotary_max_wavelength, key_dim):
    """`rotary_max_wavelength`: None, or a number > 1 with an even `key_dim`."""
    if rotary_max_wavelength is not None:
        if not isinstance(rotary_max_wavelength, (int, float)) or rotary_max_wavelength <= 1:
            raise ValueError(
                "`rotary_max_wavelength` must be None or a number > 1; received "
                f"{rotary_max_wavelength!r}."
            )
        if key_dim % 2:
            raise ValueError(
                f"Rotary embeddings need an even `key_dim`; received {key_dim}."
            )
    return rotary_max_wavelength


def check_flash_attention(flash_attention, rate, dropout):
    """`flash_attention`: None, True or False; True only without dropout (`rate`, the
    checked `dropout`)."""
    if flash_attention not in (None, True, False):
        raise ValueError(
            f"`flash_attention` must be None, True or False; received {flash_attention!r}."
        )
    if flash_attention and rate > 0:
        raise ValueError(
            "`flash_attention=True` cannot apply dropout to the attention probabilities "
            f"(the fused kernel never materialises them); received dropout={dropout!r}. "
            "Set dropout=0.0 or flash_attention=None."
        )
    return flash_attention


# Masks and the cache -----------------------------------------------------------------------


def check_masks(target, value_length, source, **masks):
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


def check_cache_index(cache_update_index, length, cache_length):
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


def check_cache(cache, num_heads, key_dim, value_dim):
    """A cache of shape `[batch, 2, max_length, num_heads, key_dim]` (static shapes)."""
    expected = (2, None, num_heads, key_dim)
    shape = tuple(cache.shape)
    if (
        len(shape) != 5
        or value_dim != key_dim
        or any(e is not None and s is not None and s != e for s, e in zip(shape[1:], expected))
    ):
        raise ValueError(
            "`cache` must have shape [batch, 2, max_length, num_heads, key_dim] = "
            f"[batch, 2, max_length, {num_heads}, {key_dim}] (and needs "
            f"value_dim == key_dim, here {value_dim} and {key_dim}); "
            f"received shape {shape}."
        )


def merge_masks(query_mask, value_mask, key_mask, attention_mask):
    """One boolean attention mask `[batch, T, S]` (or None) from Keras' four masks."""
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


def sliding_window_mask(mask, query_length, key_length, start, sliding_window):
    """`mask` and Keras' band `|position(query) - position(key)| < sliding_window`
    (`[1, T, S]`, queries at `start + i`), or `mask` if `sliding_window` is None."""
    if sliding_window is None:
        return mask
    i = ops.arange(query_length, dtype="int32")[:, None] + ops.cast(start, "int32")
    j = ops.arange(key_length, dtype="int32")[None, :]
    band = ops.less(ops.abs(i - j), sliding_window)[None]
    return band if mask is None else ops.logical_and(ops.cast(mask, "bool"), band)
