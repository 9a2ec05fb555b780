"""Cached decoding, the part of generation that runs inside the compiled function: a pass
over the prompts (`prefill`), then one token a step (`decode_with_cache`) through any decoder
that keeps `keras_unitscale.models.Backbone`'s cache contract, and the mask of what was kept
(`generated_mask`). Written with `keras.ops` only, so that it compiles whole;
`keras_unitscale.models.generation` compiles it and drives it.
"""

from keras import ops


def generated_mask(token_ids, prompt_mask, stop_token_ids):
    """Mask of the kept positions: the prompt, then generated tokens up to and including the
    first stop token after the prompt (everything when `stop_token_ids` is None)."""
    if stop_token_ids is None:
        return ops.ones_like(token_ids, dtype="bool")
    stop = ops.zeros_like(token_ids, dtype="bool")
    for token in stop_token_ids:
        stop = ops.logical_or(stop, ops.equal(token_ids, token))
    stop = ops.cast(ops.logical_and(stop, ops.logical_not(prompt_mask)), "int32")
    after_stop = ops.cumsum(stop, axis=-1) - stop
    return ops.equal(after_stop, 0)


def prefill_lengths(length, shortest=8):
    """The static prefix lengths `prefill` chooses from, shortest first: a quarter of `length`
    (when that is at least `shortest` tokens) and `length` itself.

    Each one is a branch of the compiled generate function, so each adds a forward pass to
    what XLA compiles once (about a quarter more compile time for two); two catch the usual
    case, prompts much shorter than `max_length`.

    Example:
    >>> from keras_unitscale.models.decoding import prefill_lengths
    >>> prefill_lengths(64), prefill_lengths(1000), prefill_lengths(31)
    ([16, 64], [250, 1000], [31])
    """
    length = int(length)
    return [length // 4, length] if length // 4 >= shortest else [length]


def prefill(run, token_ids, index):
    """The prompt pass of cached decoding, over the shortest prefix that covers the prompts.

    Decoding starts at `index`, the shortest prompt's length: the cache must hold the keys and
    values of positions `< index`, and every later position is written by the decoding loop
    before it is read. A full pass over all `length` positions (what KerasHub's causal LMs do)
    wastes most of its work on short prompts; this runs `run` on the first `n` positions
    instead, with `n` the smallest of `prefill_lengths(length)` that is at least `index`, chosen
    at run time (`keras.ops.switch`: one compiled branch per length, so the shapes stay
    static under XLA). The keys and values it writes are the ones the full pass writes at
    those positions.

    Args:
        run: `run(prefix_ids) -> (hidden [batch, n, dim], *caches)`.
        token_ids: `[batch, length]` packed prompts, with a static `length`.
        index: scalar int tensor, the first position to decode.

    Returns:
        `run`'s outputs, with `hidden` zero-padded to `length` positions.
    """
    length = token_ids.shape[1]
    # A length known only at run time (`None` on TensorFlow, symbolic under JAX shape
    # polymorphism), or too short to split: one full pass.
    sizes = prefill_lengths(length) if isinstance(length, int) else []
    if len(sizes) < 2:
        return tuple(run(token_ids))

    def branch(size):
        def prefix_pass(token_ids):
            hidden, *caches = run(token_ids[:, :size])
            if size < length:
                hidden = ops.pad(hidden, [[0, 0], [0, length - size], [0, 0]])
            return (hidden, *caches)

        return prefix_pass

    shorter = ops.less(ops.convert_to_tensor(sizes[:-1], "int32"), ops.cast(index, "int32"))
    which = ops.sum(ops.cast(shorter, "int32"))
    return tuple(ops.switch(which, [branch(size) for size in sizes], token_ids))


def decode_with_cache(call_with_cache, cache, token_ids, padding_mask, sampler,
                      stop_token_ids=None, model=None, parallel_prefill=True):
    """Cached decoding of packed prompts, for any decoder that keeps the cache contract of
    `keras_unitscale.models.Backbone`.

    With `parallel_prefill`, one pass over the prompts (`prefill`, with their padding mask)
    fills the cache up to the shortest prompt's end, `index`; then `sampler` chooses one
    token a step from `index` on, each step running the previous token at `index - 1`
    (positions the cache holds already are run again, with the values they had, so every
    row goes on from the same index). Without it (a recurrent decoder, whose pass over the
    prompts is a loop over positions anyway), the prompts go through the decoding loop from
    position 0: one compiled loop instead of one more per prefill length. Either way the
    sampler keeps the prompts' own tokens where `padding_mask` is set.

    Args:
        call_with_cache: `(token_ids, cache, cache_update_index, padding_mask=None) ->
            (logits, hidden, cache)`, a task's (its backbone and its head).
        cache: the empty cache, over `length` positions.
        token_ids: int `[batch, length]` packed prompts, on the left.
        padding_mask: boolean `[batch, length]`, true on the prompts.
        sampler: a `keras_hub.samplers.Sampler`.
        stop_token_ids: a tuple of ids or None.
        model: handed to the sampler.
        parallel_prefill: the backbone's `parallel_prefill`.

    Returns:
        int `[batch, length]`: the prompts and the generated tokens.
    """
    if parallel_prefill:
        index = ops.min(ops.sum(ops.cast(padding_mask, "int32"), axis=-1))

        def run(prefix_ids):
            _, hidden, new_cache = call_with_cache(prefix_ids, cache, 0, padding_mask=padding_mask)
            return hidden, new_cache

        hidden, cache = prefill(run, token_ids, index)
    else:
        index, hidden = ops.convert_to_tensor(1, "int32"), None

    def next(prompt, cache, index):
        token = ops.slice(prompt, [0, index - 1], [ops.shape(prompt)[0], 1])
        logits, hidden, cache = call_with_cache(token, cache, index - 1)
        return ops.squeeze(logits, 1), ops.squeeze(hidden, 1), cache

    return sampler(
        next=next, prompt=token_ids, cache=cache, index=index, mask=padding_mask,
        stop_token_ids=stop_token_ids, hidden_states=hidden, model=model,
    )
