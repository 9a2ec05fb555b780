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

from keras_unitscale.tokenizers._jieba_graph_ops import (  # noqa: F401  (WHITESPACE: public)
    WHITESPACE,
    E as _E,
    S as _S,
    is_space as _is_space,
    next_values,
    normalize_whitespace,
    previous_values,
    regex_starts,
    route_lengths,
    route_starts,
    run_lengths,
    spread_from_start,
    viterbi,
)

SPACE_TOKEN = "\u2581"
MIN_FLOAT = -3.14e100  # jieba.finalseg's log(0)
_BLOCK_WORD = re.compile("[\u4E00-\u9FD5a-zA-Z0-9+#&._%\\-]+")
_BLOCK_SYMBOLS = tuple(ord(c) for c in "+#&._%-")
_STATES = "BEMS"  # index order = jieba's tie order (max of (prob, state) takes the later one)
_PREVIOUS = {"B": "ES", "M": "MB", "S": "SE", "E": "BM"}  # jieba.finalseg.PrevStatus
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
        chars, codes, lengths = normalize_whitespace(codes)
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
        route = route_starts(block, lengths)
        single = route & tf.equal(lengths, 1)
        if not hmm:
            eng = single & alnum
            joined = eng & previous_values(eng)
            return valid & (~block | (route & ~joined))
        # Runs of one-character route words (jieba's `buf`).
        run_start = single & ~previous_values(single)
        run_length = run_lengths(single, run_start)
        # Is the whole run a dictionary word? Read at the run's first position.
        capped = tf.maximum(tf.minimum(run_length, self.max_word_length) - 1, 0)
        is_word = tf.gather(found, capped, batch_dims=2) & (run_length <= self.max_word_length)
        is_word = spread_from_start(is_word, single, run_start)
        hmm_region = single & ~is_word & (run_length >= 2)
        same_run = previous_values(hmm_region) & ~run_start
        han_run = hmm_region & han
        han_start = han_run & ~(same_run & previous_values(han))
        other = hmm_region & ~han
        other_start = other & ~(same_run & ~previous_values(han))
        emit_rows = tf.gather(tf.constant(self._emit, tf.float64), self.emitting.lookup(chars))
        states = viterbi(han_run, han_start, emit_rows, self._start, self._trans)
        previous_state = previous_values(states, fill=_S)
        han_word = han_run & (han_start | tf.equal(previous_state, _E) |
                              tf.equal(previous_state, _S))
        next_digit = next_values(other & ~other_start & digit)
        other_word = regex_starts(other, other_start, alnum, digit, codes, next_digit)
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
        return route_lengths(block, found, log_p, self._minus_log_total), found, log_p
