"""jieba's default-mode segmentation (`jieba.Tokenizer.cut`) in core TensorFlow ops.

`JiebaGraphSegmenter` gives the words that `JiebaTokenizer` gives on its Python path (jieba's
`cut` after whitespace runs become one space and the ends are stripped, each space written
`▁`), batched, with no Python at run time: what a `tf.data` pipeline and an exported graph
run. No `tf.py_function`, no TF Text; only lookup tables, string and integer ops and
`tf.while_loop`s over character positions, vectorised across the batch.

The steps, each as jieba does it (jieba 0.42, `jieba/__init__.py` and `jieba/finalseg/`):

1. Blocks. Maximal runs of `[\u4E00-\u9FD5a-zA-Z0-9+#&._%-]` (jieba's `re_han_default`) are
   segmented; every other character (whitespace included) is a word of its own.
2. Candidate words (jieba's DAG). Within a block, the span `text[k:j + 1]` is a candidate when
   the dictionary gives it a positive frequency; a position with no candidate gets its single
   character. Spans are joined from characters for each length up to the longest word and
   looked up in a `tf.lookup.StaticHashTable` from word to `log(freq) - log(total)`, computed
   in Python exactly as jieba computes it. Words with a character outside the block class
   can never match and are left out of the table.
3. Route (jieba's `calc`). Right to left, `route[k] = max(logp(k..j) + route[j + 1])` in
   float64 with jieba's order of additions, ties to the longer word: the same floats, so the
   same route.
4. Without the HMM, consecutive one-character route words that are ASCII letters or digits
   join into one word. With the HMM, each run of one-character route words (jieba's `buf`)
   of two or more characters that is not itself a dictionary word goes to `finalseg`: its Han
   runs are decoded by Viterbi over jieba's start, transition and emission tables (float64,
   the same additions and tie-breaks), and the rest is split by jieba's
   `[a-zA-Z0-9]+(?:\\.\\d+)?%?` into matches and the text between them.

What this does not follow: words that jieba's process-global `finalseg.Force_Split_Words`
holds (frequency-0 words added to *any* `jieba.Tokenizer` in the process; `JiebaTokenizer`
refuses frequency 0). Invalid UTF-8 is an `InvalidArgumentError`.
"""

import functools
import math
import re

import numpy as np
import tensorflow as tf

SPACE_TOKEN = "\u2581"
MIN_FLOAT = -3.14e100  # jieba.finalseg's log(0)
# The code points for which Python's `str.isspace()` (and `re`'s `\s`) is true;
# `test_jieba_graph` checks this list against Python.
WHITESPACE = (
    9, 10, 11, 12, 13, 28, 29, 30, 31, 32, 133, 160, 5760, 8192, 8193, 8194, 8195, 8196, 8197,
    8198, 8199, 8200, 8201, 8202, 8232, 8233, 8239, 8287, 12288,
)
_BLOCK_WORD = re.compile("[\u4E00-\u9FD5a-zA-Z0-9+#&._%\\-]+")
_BLOCK_SYMBOLS = tuple(ord(c) for c in "+#&._%-")
_STATES = "BEMS"  # index order = jieba's tie order (max of (prob, state) takes the later one)
_PREVIOUS = {"B": "ES", "M": "MB", "S": "SE", "E": "BM"}  # jieba.finalseg.PrevStatus
_B, _E, _M, _S = range(4)
_SENTINEL = 1.0  # a table miss; every log-probability is <= 0


@functools.lru_cache(maxsize=1)
def _hmm_tables():
    """jieba's HMM as arrays: start [4], transitions [from, to] (-inf where not allowed),
    the emitting characters and their emissions [chars + 1, 4] (the last row for others)."""
    from jieba.finalseg import emit_P, start_P, trans_P

    start = [start_P[s] for s in _STATES]
    trans = [[trans_P[a].get(b, MIN_FLOAT) if a in _PREVIOUS[b] else -math.inf
              for b in _STATES] for a in _STATES]
    chars = sorted(set().union(*(set(emit_P[s]) for s in _STATES)))
    emit = [[emit_P[s].get(c, MIN_FLOAT) for s in _STATES] for c in chars]
    emit.append([MIN_FLOAT] * 4)
    return (np.array(start, np.float64), np.array(trans, np.float64), chars,
            np.array(emit, np.float64))


@functools.lru_cache(maxsize=4)
def get_graph_segmenter(entries=()):
    """The `JiebaGraphSegmenter` of jieba's main dictionary plus the user `entries` (as
    `jieba_segmenter.get_segmenter` takes them); cached per `entries`."""
    from keras_unitscale.tokenizers import jieba_segmenter

    jieba = jieba_segmenter.get_segmenter(entries)
    return JiebaGraphSegmenter(jieba.FREQ, jieba.total)


def word_log_probabilities(freq, total):
    """`{word: log(freq) - log(total)}` for the words a block can hold, as jieba computes it.

    Example:
    >>> table = word_log_probabilities({"好": 3, "好人": 1, "好人卡": 0, "Ｔ恤": 5}, 4)
    >>> sorted(table), table["好人"] == -math.log(4)
    (['好', '好人'], True)
    """
    log_total = math.log(total)
    return {word: math.log(f) - log_total for word, f in freq.items()
            if f and _BLOCK_WORD.fullmatch(word)}


class JiebaGraphSegmenter(tf.Module):
    """jieba's `cut` (default mode) for one dictionary, as TensorFlow ops (see the module).

    Args:
        freq: jieba's prefix dictionary, `{word: frequency}` (a `jieba.Tokenizer`'s `FREQ`,
            user words included; zero marks a prefix that is not a word).
        total: the sum of the frequencies (the tokenizer's `total`).

    Example:
    >>> from keras_unitscale.tokenizers import jieba_segmenter
    >>> jieba = jieba_segmenter.get_segmenter(())
    >>> segmenter = JiebaGraphSegmenter(jieba.FREQ, jieba.total)
    >>> words = segmenter(tf.constant(["我来到北京清华大学", " Keras 3.0 很好用！ "]))
    >>> [[w.decode() for w in row] for row in words.to_list()]
    [['我', '来到', '北京', '清华大学'], ['Keras', '▁', '3.0', '▁', '很', '好', '用', '！']]
    """

    def __init__(self, freq, total, name=None):
        super().__init__(name=name)
        table = word_log_probabilities(freq, total)
        if not table:
            raise ValueError("`freq` must hold at least one word with a positive frequency.")
        self.max_word_length = max(len(word) for word in table)
        self._minus_log_total = 0.0 - math.log(total)  # jieba: log(1) - log(total)
        # NumPy arrays: a tf.Module would wrap lists for tracking, element by element.
        self._start, self._trans, chars, self._emit = _hmm_tables()
        with tf.init_scope():  # resources are made eagerly, even from inside a trace
            self.words = tf.lookup.StaticHashTable(
                tf.lookup.KeyValueTensorInitializer(
                    tf.constant(list(table)), tf.constant(list(table.values()), tf.float64)),
                default_value=tf.constant(_SENTINEL, tf.float64))
            self.emitting = tf.lookup.StaticHashTable(
                tf.lookup.KeyValueTensorInitializer(
                    tf.constant(chars), tf.range(len(chars), dtype=tf.int64)),
                default_value=tf.constant(len(chars), tf.int64))
        # Untracked (set past tf.Module's tracking): the functions are not part of a save;
        # the tables they capture are.
        object.__setattr__(self, "_functions", {})

    def __call__(self, texts, hmm=True):
        """Segments a 1-D string tensor; returns a `tf.RaggedTensor` of words, one row a text.

        Runs one concrete function per `hmm` setting, traced once per process: inside
        another function (`tf.data`, an export) it is a function call, not a new trace.
        """
        hmm = bool(hmm)
        if hmm not in self._functions:
            with tf.init_scope():
                function = tf.function(functools.partial(self.segment, hmm=hmm),
                                       autograph=False)
                self._functions[hmm] = function.get_concrete_function(
                    tf.TensorSpec([None], tf.string))
        return self._functions[hmm](tf.convert_to_tensor(texts, tf.string))

    # The graph ------------------------------------------------------------------------------
    def segment(self, texts, hmm=True):
        """The ops of `__call__` (a 1-D string tensor in, a ragged string tensor out)."""
        texts = tf.convert_to_tensor(texts, tf.string)
        codes = tf.strings.unicode_decode(texts, "UTF-8", errors="strict")
        chars, codes, lengths = _normalize_whitespace(codes)
        batch = tf.shape(texts)[0]
        ragged_codes = tf.RaggedTensor.from_row_lengths(codes, lengths)
        # One padding column at least: the loops then never stack an empty list.
        padded_codes = tf.pad(ragged_codes.to_tensor(default_value=-1), [[0, 0], [0, 1]],
                              constant_values=-1)
        padded_chars = tf.pad(tf.RaggedTensor.from_row_lengths(chars, lengths).to_tensor(
            default_value=""), [[0, 0], [0, 1]], constant_values="")
        starts = self._word_starts(padded_chars, padded_codes, hmm)
        starts = tf.RaggedTensor.from_tensor(starts, lengths=lengths).flat_values
        word_ids = tf.cumsum(tf.cast(starts, tf.int32)) - 1
        num_words = tf.reduce_sum(tf.cast(starts, tf.int32))
        words = tf.strings.unsorted_segment_join(chars, word_ids, num_words)
        is_space = tf.boolean_mask(_is_space(codes), starts)
        words = tf.where(is_space, SPACE_TOKEN, words)
        row_words = tf.math.unsorted_segment_sum(
            tf.cast(starts, tf.int32), ragged_codes.value_rowids(), batch)
        return tf.RaggedTensor.from_row_lengths(words, tf.cast(row_words, tf.int64))

    def _word_starts(self, chars, codes, hmm):
        """`[batch, length]` bool: where each word starts (padding: False)."""
        valid = codes >= 0
        han = (codes >= 0x4E00) & (codes <= 0x9FD5)
        upper, lower = (codes >= 65) & (codes <= 90), (codes >= 97) & (codes <= 122)
        digit = (codes >= 48) & (codes <= 57)
        alnum = upper | lower | digit
        symbol = tf.reduce_any(codes[..., None] == tf.constant(_BLOCK_SYMBOLS), axis=-1)
        block = han | alnum | symbol
        lengths, found, log_p = self._candidates(chars, block)
        route = _route_starts(block, lengths)
        single = route & tf.equal(lengths, 1)
        if not hmm:
            eng = single & alnum
            joined = eng & _previous(eng)
            return valid & (~block | (route & ~joined))
        # Runs of one-character route words (jieba's `buf`).
        run_start = single & ~_previous(single)
        run_length = _run_lengths(single, run_start)
        # Is the whole run a dictionary word? Read at the run's first position.
        capped = tf.maximum(tf.minimum(run_length, self.max_word_length) - 1, 0)
        is_word = tf.gather(found, capped, batch_dims=2) & (run_length <= self.max_word_length)
        is_word = _spread_from_start(is_word, single, run_start)
        hmm_region = single & ~is_word & (run_length >= 2)
        same_run = _previous(hmm_region) & ~run_start
        han_run = hmm_region & han
        han_start = han_run & ~(same_run & _previous(han))
        other = hmm_region & ~han
        other_start = other & ~(same_run & ~_previous(han))
        emit_rows = tf.gather(tf.constant(self._emit, tf.float64), self.emitting.lookup(chars))
        states = _viterbi(han_run, han_start, emit_rows, self._start, self._trans)
        previous_state = _previous(states, fill=_S)
        han_word = han_run & (han_start | tf.equal(previous_state, _E) |
                              tf.equal(previous_state, _S))
        next_digit = _next(other & ~other_start & digit)
        other_word = _regex_starts(other, other_start, alnum, digit, codes, next_digit)
        return valid & (~block | (route & ~single) | (single & ~hmm_region) | han_word |
                        other_word)

    def _candidates(self, chars, block):
        """Route lengths per position, and for each position and word length whether the
        span is a dictionary word and its log-probability (`[batch, length, max_len]`)."""
        max_len = self.max_word_length
        shape = tf.shape(chars)
        chars_padded = tf.concat([chars, tf.fill([shape[0], max_len], "")], axis=1)
        block_padded = tf.concat([block, tf.zeros([shape[0], max_len], tf.bool)], axis=1)

        def step(size, span, inside, out):
            # `span`, `inside`: the spans of `size` characters and whether they lie in a block.
            where = tf.where(inside)
            log_p = tf.tensor_scatter_nd_update(
                tf.fill(shape, tf.constant(_SENTINEL, tf.float64)), where,
                self.words.lookup(tf.gather_nd(span, where)))
            span = span + tf.slice(chars_padded, [0, size], shape)
            inside = inside & tf.slice(block_padded, [0, size], shape)
            return size + 1, span, inside, out.write(size - 1, log_p)

        out = tf.TensorArray(tf.float64, size=max_len, element_shape=[None, None])
        _, _, _, out = tf.while_loop(lambda size, *_: size <= max_len, step,
                                     (1, chars, block, out))
        log_p = tf.transpose(out.stack(), [1, 2, 0])  # [batch, length, size]
        found = log_p < 0.5 * _SENTINEL
        return _route_lengths(block, found, log_p, self._minus_log_total), found, log_p


def _is_space(codes):
    return tf.reduce_any(codes[:, None] == tf.constant(WHITESPACE, codes.dtype), axis=-1)


def _normalize_whitespace(codes):
    """Python's `re.sub(r"\\s+", " ", text).strip()`, keeping each run's first character
    (written `▁` at the end). Returns the flat characters, code points and row lengths."""
    flat = codes.flat_values
    rows = codes.value_rowids()
    batch = codes.nrows()
    position = tf.range(tf.shape(flat)[0], dtype=tf.int64) - tf.gather(codes.row_starts(), rows)
    space = _is_space(flat)
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


def _previous(x, fill=False):
    pad = tf.fill([tf.shape(x)[0], 1], tf.constant(fill, x.dtype))
    return tf.concat([pad, x[:, :-1]], axis=1)


def _next(x, fill=False):
    pad = tf.fill([tf.shape(x)[0], 1], tf.constant(fill, x.dtype))
    return tf.concat([x[:, 1:], pad], axis=1)


def _time_major(x):
    rank = len(x.shape)
    return tf.transpose(x, [1, 0] + list(range(2, rank)))


def _route_lengths(block, found, log_p, minus_log_total):
    """jieba's `calc`, right to left: the length of the best word at each position."""
    max_len = found.shape[-1]
    found_t, log_p_t, block_t = _time_major(found), _time_major(log_p), _time_major(block)
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
    return tf.reshape(_time_major(out.stack()), [batch, length])


def _route_starts(block, lengths):
    """Left to right along the route: where each route word starts."""
    block_start = block & ~_previous(block)
    block_t, start_t, lengths_t = _time_major(block), _time_major(block_start), _time_major(
        lengths)
    length, batch = tf.shape(block)[1], tf.shape(block)[0]

    def step(i, next_start, out):
        is_start = tf.gather(block_t, i) & (tf.gather(start_t, i) | tf.equal(next_start, i))
        next_start = tf.where(is_start, i + tf.gather(lengths_t, i), next_start)
        return i + 1, next_start, out.write(i, is_start)

    out = tf.TensorArray(tf.bool, size=length, element_shape=[None])
    _, _, out = tf.while_loop(lambda i, *_: i < length, step,
                              (0, tf.zeros([batch], tf.int32), out))
    return tf.reshape(_time_major(out.stack()), [batch, length])


def _run_ids(member, run_start):
    """Numbers the runs of `member` positions across the batch (non-members: the last id)."""
    runs_per_row = tf.reduce_sum(tf.cast(run_start, tf.int32), axis=1)
    offsets = tf.cumsum(runs_per_row, exclusive=True)
    run_id = tf.cumsum(tf.cast(run_start, tf.int32), axis=1) - 1 + offsets[:, None]
    count = tf.reduce_sum(runs_per_row)
    return tf.where(member, run_id, count), count + 1


def _run_lengths(member, run_start):
    """At each member position, the length of its run of `member` positions."""
    ids, count = _run_ids(member, run_start)
    sizes = tf.math.unsorted_segment_sum(tf.cast(member, tf.int32), ids, count)
    return tf.where(member, tf.gather(sizes, ids), 0)


def _spread_from_start(value, member, run_start):
    """Each member position takes `value` at its run's first position."""
    ids, count = _run_ids(member, run_start)
    per_run = tf.math.unsorted_segment_max(
        tf.where(run_start, tf.cast(value, tf.int32), 0), ids, count)
    return member & (tf.gather(per_run, ids) > 0)


def _viterbi(run, run_start, emit, start, trans):
    """jieba.finalseg's Viterbi over each run of Han characters: the state (B, E, M, S as
    0..3) at each position of a run (elsewhere S)."""
    start = tf.constant(start, tf.float64)
    trans = tf.constant(trans, tf.float64)
    run_t, start_t, emit_t = _time_major(run), _time_major(run_start), _time_major(emit)
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
        last = tf.where(tf.gather(scores, i)[:, _S] >= tf.gather(scores, i)[:, _E], _S, _E)
        followed = tf.gather(tf.gather(pointers, i + 1), state, batch_dims=1)
        state = tf.where(tf.gather(end_t, i), last, tf.where(tf.gather(run_t, i), followed, _S))
        return i - 1, state, out.write(i, state)

    out = tf.TensorArray(tf.int32, size=length, element_shape=[None])
    _, _, out = tf.while_loop(lambda i, *_: i >= 0, backward,
                              (length - 1, tf.fill([batch], _S), out))
    return tf.reshape(_time_major(out.stack()), [batch, length])


def _regex_starts(member, run_start, alnum, digit, codes, next_digit):
    """Where finalseg's `[a-zA-Z0-9]+(?:\\.\\d+)?%?` split starts a piece, in each run of
    `member` characters: matches and the text between them are the pieces."""
    dot, percent = tf.equal(codes, ord(".")), tf.equal(codes, ord("%"))
    columns = [member, run_start, alnum, digit, dot, percent, next_digit]
    member_t, start_t, alnum_t, digit_t, dot_t, percent_t, next_digit_t = (
        _time_major(x) for x in columns)
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
    return tf.reshape(_time_major(out.stack()), [batch, length])
