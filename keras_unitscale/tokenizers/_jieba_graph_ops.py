"""The batched TensorFlow steps of `keras_unitscale.tokenizers.jieba_graph.JiebaGraphSegmenter`:
whitespace normalisation, jieba's route (`calc`) right to left, runs of one-character words,
the HMM's Viterbi decode and the `[a-zA-Z0-9]+(?:\\.\\d+)?%?` split. Each is described, with
what jieba does, in that module's docstring; all work on `[batch, position]` tensors.
"""

import math

import tensorflow as tf

# The code points for which Python's `str.isspace()` (and `re`'s `\s`) is true;
# `test_jieba_graph` checks this list against Python.
WHITESPACE = (
    9, 10, 11, 12, 13, 28, 29, 30, 31, 32, 133, 160, 5760, 8192, 8193, 8194, 8195, 8196, 8197,
    8198, 8199, 8200, 8201, 8202, 8232, 8233, 8239, 8287, 12288,
)
B, E, M, S = range(4)  # the HMM states, in jieba's tie order ("BEMS")


def is_space(codes):
    return tf.reduce_any(codes[:, None] == tf.constant(WHITESPACE, codes.dtype), axis=-1)


def normalize_whitespace(codes):
    """Python's `re.sub(r"\\s+", " ", text).strip()`, keeping each run's first character
    (written `▁` at the end). Returns the flat characters, code points and row lengths."""
    flat = codes.flat_values
    rows = codes.value_rowids()
    batch = codes.nrows()
    position = tf.range(tf.shape(flat)[0], dtype=tf.int64) - tf.gather(codes.row_starts(), rows)
    space = is_space(flat)
    previous_space = tf.concat([[False], space[:-1]], axis=0) & (position > 0)
    big = tf.int64.max
    first = tf.math.unsorted_segment_min(tf.where(space, big, position), rows, batch)
    last = tf.math.unsorted_segment_max(tf.where(space, -1 * tf.ones_like(position), position),
                                        rows, batch)
    inner = (position > tf.gather(first, rows)) & (position < tf.gather(last, rows))
    keep = ~space | (~previous_space & inner)
    kept = tf.boolean_mask(flat, keep)
    lengths = tf.math.unsorted_segment_sum(tf.cast(keep, tf.int64), rows, batch)
    chars = tf.strings.unicode_encode(kept[:, None], "UTF-8")
    return chars, kept, lengths


def previous_values(x, fill=False):
    pad = tf.fill([tf.shape(x)[0], 1], tf.constant(fill, x.dtype))
    return tf.concat([pad, x[:, :-1]], axis=1)


def next_values(x, fill=False):
    pad = tf.fill([tf.shape(x)[0], 1], tf.constant(fill, x.dtype))
    return tf.concat([x[:, 1:], pad], axis=1)


def time_major(x):
    rank = len(x.shape)
    return tf.transpose(x, [1, 0] + list(range(2, rank)))


def route_lengths(block, found, log_p, minus_log_total):
    """jieba's `calc`, right to left: the length of the best word at each position."""
    max_len = found.shape[-1]
    found_t, log_p_t, block_t = time_major(found), time_major(log_p), time_major(block)
    length, batch = tf.shape(block)[1], tf.shape(block)[0]
    sizes = tf.range(1, max_len + 1)

    def step(i, window, out):
        found_i, log_p_i = tf.gather(found_t, i), tf.gather(log_p_t, i)
        scores = tf.where(found_i, log_p_i + window, -math.inf)
        best = tf.reduce_max(scores, axis=1)
        best_size = tf.reduce_max(tf.where(found_i & (scores == best[:, None]), sizes, 0), 1)
        any_found = tf.reduce_any(found_i, axis=1)
        value = tf.where(any_found, best, minus_log_total + window[:, 0])
        size = tf.where(any_found, best_size, 1)
        value = tf.where(tf.gather(block_t, i), value, 0.0)  # a block ends: the next route is 0
        window = tf.concat([value[:, None], window[:, :-1]], axis=1)
        return i - 1, window, out.write(i, size)

    out = tf.TensorArray(tf.int32, size=length, element_shape=[None])
    _, _, out = tf.while_loop(
        lambda i, *_: i >= 0, step,
        (length - 1, tf.zeros([batch, max_len], tf.float64), out))
    return tf.reshape(time_major(out.stack()), [batch, length])


def route_starts(block, lengths):
    """Left to right along the route: where each route word starts."""
    block_start = block & ~previous_values(block)
    block_t, start_t, lengths_t = time_major(block), time_major(block_start), time_major(
        lengths)
    length, batch = tf.shape(block)[1], tf.shape(block)[0]

    def step(i, next_start, out):
        is_start = tf.gather(block_t, i) & (tf.gather(start_t, i) | tf.equal(next_start, i))
        next_start = tf.where(is_start, i + tf.gather(lengths_t, i), next_start)
        return i + 1, next_start, out.write(i, is_start)

    out = tf.TensorArray(tf.bool, size=length, element_shape=[None])
    _, _, out = tf.while_loop(lambda i, *_: i < length, step,
                              (0, tf.zeros([batch], tf.int32), out))
    return tf.reshape(time_major(out.stack()), [batch, length])


def run_ids(member, run_start):
    """Numbers the runs of `member` positions across the batch (non-members: the last id)."""
    runs_per_row = tf.reduce_sum(tf.cast(run_start, tf.int32), axis=1)
    offsets = tf.cumsum(runs_per_row, exclusive=True)
    run_id = tf.cumsum(tf.cast(run_start, tf.int32), axis=1) - 1 + offsets[:, None]
    count = tf.reduce_sum(runs_per_row)
    return tf.where(member, run_id, count), count + 1


def run_lengths(member, run_start):
    """At each member position, the length of its run of `member` positions."""
    ids, count = run_ids(member, run_start)
    sizes = tf.math.unsorted_segment_sum(tf.cast(member, tf.int32), ids, count)
    return tf.where(member, tf.gather(sizes, ids), 0)


def spread_from_start(value, member, run_start):
    """Each member position takes `value` at its run's first position."""
    ids, count = run_ids(member, run_start)
    per_run = tf.math.unsorted_segment_max(
        tf.where(run_start, tf.cast(value, tf.int32), 0), ids, count)
    return member & (tf.gather(per_run, ids) > 0)


def viterbi(run, run_start, emit, start, trans):
    """jieba.finalseg's Viterbi over each run of Han characters: the state (B, E, M, S as
    0..3) at each position of a run (elsewhere S)."""
    start = tf.constant(start, tf.float64)
    trans = tf.constant(trans, tf.float64)
    run_t, start_t, emit_t = time_major(run), time_major(run_start), time_major(emit)
    length, batch = tf.shape(run)[1], tf.shape(run)[0]
    states = tf.range(4)

    def forward(i, v, scores, pointers):
        first = start[None, :] + tf.gather(emit_t, i)
        candidates = (v[:, :, None] + trans[None]) + tf.gather(emit_t, i)[:, None, :]  # [batch, from, to]
        best = tf.reduce_max(candidates, axis=1)
        pointer = tf.reduce_max(
            tf.where(candidates == best[:, None, :], states[None, :, None], -1), axis=1)
        v = tf.where(tf.gather(start_t, i)[:, None], first, tf.where(tf.gather(run_t, i)[:, None], best, v))
        return i + 1, v, scores.write(i, v), pointers.write(i, pointer)

    scores = tf.TensorArray(tf.float64, size=length, element_shape=[None, 4])
    pointers = tf.TensorArray(tf.int32, size=length, element_shape=[None, 4])
    _, _, scores, pointers = tf.while_loop(
        lambda i, *_: i < length, forward,
        (0, tf.zeros([batch, 4], tf.float64), scores, pointers))
    scores, pointers = scores.stack(), pointers.stack()
    pointers = tf.concat([pointers, tf.zeros([1, batch, 4], tf.int32)], axis=0)
    run_next = tf.concat([run_t[1:], tf.zeros([1, batch], tf.bool)], axis=0)
    start_next = tf.concat([start_t[1:], tf.zeros([1, batch], tf.bool)], axis=0)
    end_t = run_t & ~(run_next & ~start_next)

    def backward(i, state, out):
        last = tf.where(tf.gather(scores, i)[:, S] >= tf.gather(scores, i)[:, E], S, E)
        followed = tf.gather(tf.gather(pointers, i + 1), state, batch_dims=1)
        state = tf.where(tf.gather(end_t, i), last, tf.where(tf.gather(run_t, i), followed, S))
        return i - 1, state, out.write(i, state)

    out = tf.TensorArray(tf.int32, size=length, element_shape=[None])
    _, _, out = tf.while_loop(lambda i, *_: i >= 0, backward,
                              (length - 1, tf.fill([batch], S), out))
    return tf.reshape(time_major(out.stack()), [batch, length])


def regex_starts(member, run_start, alnum, digit, codes, next_digit):
    """Where finalseg's `[a-zA-Z0-9]+(?:\\.\\d+)?%?` split starts a piece, in each run of
    `member` characters: matches and the text between them are the pieces."""
    dot, percent = tf.equal(codes, ord(".")), tf.equal(codes, ord("%"))
    columns = [member, run_start, alnum, digit, dot, percent, next_digit]
    member_t, start_t, alnum_t, digit_t, dot_t, percent_t, next_digit_t = (
        time_major(x) for x in columns)
    length, batch = tf.shape(member)[1], tf.shape(member)[0]
    gap, word, decimal, closed = 0, 1, 2, 3

    def step(i, mode, out):
        a, d = tf.gather(alnum_t, i), tf.gather(digit_t, i)
        fresh = tf.where(a, word, gap)
        in_word = tf.equal(mode, word)
        in_decimal = tf.equal(mode, decimal)
        in_gap = tf.equal(mode, gap)
        to_decimal = in_word & tf.gather(dot_t, i) & tf.gather(next_digit_t, i)
        to_closed = (in_word | in_decimal) & tf.gather(percent_t, i)
        stays = (in_word & a) | (in_decimal & d) | to_decimal | to_closed | (in_gap & ~a)
        new_mode = tf.where(to_decimal, decimal, tf.where(to_closed, closed, tf.where(
            stays, mode, fresh)))
        new_mode = tf.where(tf.gather(start_t, i), fresh, new_mode)
        begins = tf.gather(member_t, i) & (tf.gather(start_t, i) | ~stays)
        mode = tf.where(tf.gather(member_t, i), new_mode, mode)
        return i + 1, mode, out.write(i, begins)

    out = tf.TensorArray(tf.bool, size=length, element_shape=[None])
    _, _, out = tf.while_loop(lambda i, *_: i < length, step,
                              (0, tf.fill([batch], gap), out))
    return tf.reshape(time_major(out.stack()), [batch, length])
