"""KerasHub's WordPiece tokenizing and detokenizing in core TensorFlow ops only.

KerasHub's TensorFlow path calls TF Text (`regex_split`, `case_fold_utf8`, `normalize_utf8`,
`FastWordpieceTokenizer`), whose ops a TensorFlow without TF Text cannot load. This module
gives the same ids and texts with ops that every TensorFlow registers:

- splitting: `regex_replace` writes a NUL around each kept delimiter (punctuation, CJK,
  special tokens) and in place of each dropped one (whitespace, control and format
  characters; NUL is one of them), then `strings.split` on NUL and empty pieces dropped. The
  delimiters are single characters, or special tokens tried first, so this cuts where TF
  Text's `regex_split` cuts.
- case folding and accent stripping: a per-character table (`_core_unicode_tables`, made
  from TF Text's own results for every code point). Exact except where NFKC composes or
  reorders across characters (a letter followed by a combining mark, conjoining Hangul
  jamo); benchmarks/core_tokenizers.py finds every id equal on this library's corpora.
- WordPiece: greedy longest-match-first, all words at once in a `tf.while_loop`: each step
  looks up, for every unfinished word, each substring from its position up to the longest
  vocabulary entry's length (with the suffix indicator after the first piece) in a hash
  table, takes the longest found and moves past it. A word with no full cover, or longer
  than 100 bytes, is the unknown token, as in TF Text.
- detokenizing: pieces joined with spaces, a suffix piece (not first, longer than the
  indicator) glued to the previous one without its indicator, as in TF Text.
"""

import functools
import re

from keras_unitscale.tokenizers._inputs import tf

# Modules, so that a layer holding one tracks its hash tables into an export.
_Module = tf.Module if tf is not None else object
MAX_BYTES_PER_WORD = 100  # As TF Text's FastWordpieceTokenizer (and KerasHub's Python path).
_CUT = "\x00"
_MISSING = b"\xff"  # Not UTF-8: no table value can be this.


@functools.lru_cache(maxsize=2)
def _table_entries(name):
    from keras_unitscale.tokenizers import _core_unicode_tables

    entries = {}
    for line in getattr(_core_unicode_tables, name).strip().splitlines():
        point, mapped = line.split(":")
        entries[chr(int(point, 16))] = "".join(chr(int(m, 16)) for m in mapped.split())
    if name == "NFD":  # Hangul syllables: L V (T), arithmetically.
        for s in range(11172):
            jamo = chr(0x1100 + s // 588) + chr(0x1161 + (s % 588) // 28)
            entries[chr(0xAC00 + s)] = jamo + (chr(0x11A7 + s % 28) if s % 28 else "")
    return entries


class CharacterMap(_Module):
    """Maps each character of a string tensor through a table (missing ones stay)."""

    def __init__(self, name):
        super().__init__(name=name.lower())
        entries = _table_entries(name)
        self._table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(list(entries)), tf.constant(list(entries.values()))
            ),
            default_value=_MISSING,
        )
        # Texts made only of ASCII and CJK characters the table leaves alone skip the work.
        kept = [c for lo, hi in ((0, 0x7F), (0x3400, 0x4DBF), (0x4E00, 0x9FFF))
                for c in range(lo, hi + 1) if chr(c) not in entries]
        runs = []
        for c in kept:
            if runs and runs[-1][1] == c - 1:
                runs[-1][1] = c
            else:
                runs.append([c, c])
        self._unchanged = "[" + "".join(f"\\x{{{a:x}}}-\\x{{{b:x}}}" for a, b in runs) + "]*"

    def __call__(self, texts):
        """Maps a 1-D string tensor."""
        rows = tf.where(~tf.strings.regex_full_match(texts, self._unchanged))
        chars = tf.strings.unicode_split(tf.gather_nd(texts, rows), "UTF-8")
        values = chars.flat_values
        mapped = self._table.lookup(values)
        values = tf.where(tf.equal(mapped, _MISSING), values, mapped)
        mapped = tf.strings.reduce_join(chars.with_flat_values(values), axis=-1)
        return tf.tensor_scatter_nd_update(texts, rows, mapped)


class CoreWordPiece(_Module):
    """The TensorFlow state of one `WordPieceTokenizer` (build it eagerly, as a hash table)."""

    def __init__(self, vocabulary, suffix_indicator, oov_token, lowercase, strip_accents):
        super().__init__(name="core_word_piece")
        self.suffix = suffix_indicator
        self.unknown_id = vocabulary.index(oov_token)
        self.vocabulary = tf.constant(vocabulary)
        first, suffixes = {}, {}
        for i, token in enumerate(vocabulary):
            first.setdefault(token, i)  # A repeated token keeps its first id.
            if token.startswith(suffix_indicator):
                suffixes.setdefault(token[len(suffix_indicator):], i)
        if not suffixes:
            # A vocabulary without suffix pieces: TensorFlow refuses an empty table, so hold
            # one entry whose value is the default (-1, not found) and changes nothing.
            suffixes[b"\xff"] = -1
        # Entries, and suffix entries by what follows the indicator (no string joins needed).
        self.table, self.suffix_table = (
            tf.lookup.StaticHashTable(
                tf.lookup.KeyValueTensorInitializer(
                    tf.constant(list(entries), tf.string),
                    tf.constant(list(entries.values()), tf.int64),
                ),
                default_value=-1,
            )
            for entries in (first, suffixes)
        )
        self.longest = max(1, max(len(token.encode("utf-8")) for token in vocabulary))
        self.casefold = CharacterMap("CASEFOLD") if lowercase else None
        self.nfd = CharacterMap("NFD") if strip_accents else None

    # Splitting into words -------------------------------------------------------------------
    def pretokenize(self, texts, split, split_on_cjk, special_tokens_pattern, patterns):
        """`keras_hub`'s `pretokenize` for a 1-D (or, unsplit, any) string tensor."""
        whitespace, punctuation, cjk = patterns
        if split and split_on_cjk and special_tokens_pattern is not None:
            # (Without special tokens these spaces change nothing: CJK characters are kept
            # delimiters anyway.)
            texts = tf.strings.regex_replace(texts, cjk, r" \0 ")
        if self.nfd is not None:
            texts = self.nfd(texts)
            texts = tf.strings.regex_replace(texts, r"\p{Mn}", "")
        if split:
            keep = [punctuation, cjk] if split_on_cjk else [punctuation]
            if special_tokens_pattern is None:
                # Two passes without capture groups, which RE2 runs much faster.
                texts = tf.strings.regex_replace(texts, "|".join(keep), _CUT + r"\0" + _CUT)
                texts = tf.strings.regex_replace(texts, whitespace, _CUT)
            else:  # One pass: a special token may hold whitespace.
                keep.insert(0, special_tokens_pattern)
                texts = tf.strings.regex_replace(
                    texts, f"({'|'.join(keep)})|{whitespace}", _CUT + r"\1" + _CUT
                )
            words = tf.strings.split(texts, sep=_CUT)
            texts = tf.ragged.boolean_mask(words, tf.strings.length(words) > 0)
        if self.casefold is not None:
            flat = texts.flat_values if isinstance(texts, tf.RaggedTensor) else texts
            folded = self.casefold(tf.reshape(flat, [-1]))
            folded = tf.reshape(folded, tf.shape(flat))
            if special_tokens_pattern is not None:
                marker = "६"
                special = tf.equal(
                    tf.strings.regex_replace(flat, special_tokens_pattern, marker), marker
                )
                folded = tf.where(special, flat, folded)
            texts = texts.with_flat_values(folded) if isinstance(texts, tf.RaggedTensor) \
                else folded
        return texts

    # WordPiece ------------------------------------------------------------------------------
    def _word_ids(self, words):
        """1-D string tensor of words -> RaggedTensor [word, piece] of int64 ids."""
        lengths = tf.strings.length(words)
        too_long = lengths > MAX_BYTES_PER_WORD
        lengths = tf.where(too_long, 0, lengths)
        span = tf.maximum(tf.minimum(self.longest, tf.reduce_max(lengths)), 1)
        sizes = tf.range(1, span + 1)
        # Most words are one vocabulary entry (the longest match at their start): done.
        whole = tf.where(too_long, tf.constant(-1, tf.int64), self.table.lookup(words))

        def step(i, position, failed, pieces):
            # The longest entry at each unfinished word's position, looked up for every size.
            rows = tf.where(position < lengths)[:, 0]
            start = tf.gather(position, rows)
            length = tf.gather(lengths, rows)
            # Substrings of every size (the words broadcast by `substr` itself, not copied).
            shape = tf.stack([tf.size(rows), span])
            candidates = tf.strings.substr(
                tf.gather(words, rows)[:, None],
                tf.broadcast_to(start[:, None], shape),
                tf.broadcast_to(sizes[None, :], shape),
            )
            ids = tf.where(start[:, None] > 0, self.suffix_table.lookup(candidates),
                           self.table.lookup(candidates))
            found = (ids >= 0) & (start[:, None] + sizes[None, :] <= length[:, None])
            best = tf.reduce_max(tf.where(found, sizes[None, :], 0), axis=1)
            best_id = tf.reduce_max(
                tf.where(found & tf.equal(sizes[None, :], best[:, None]), ids, -1), axis=1)
            rows = rows[:, None]
            failed = tf.tensor_scatter_nd_update(failed, rows, tf.equal(best, 0))
            # A word without a piece here is finished (and unknown).
            position = tf.tensor_scatter_nd_update(
                position, rows, tf.where(best > 0, start + best, length))
            piece = tf.tensor_scatter_nd_update(
                tf.fill(tf.shape(words), tf.constant(-1, tf.int64)), rows, best_id)
            return i + 1, position, failed, pieces.write(i, piece)

        steps, _, failed, pieces = tf.while_loop(
            lambda i, position, *_: tf.reduce_any(position < lengths),
            step,
            # Step 0 holds no piece; it keeps the stack non-empty when no step runs.
            (1, tf.where(whole >= 0, lengths, 0), tf.zeros_like(too_long),
             tf.TensorArray(tf.int64, size=1, dynamic_size=True, element_shape=[None])
             .write(0, tf.fill(tf.shape(words), tf.constant(-1, tf.int64)))),
        )
        # [word, step]: each word's pieces, then -1 once it is done; an unknown word is one
        # unknown id.
        pieces = tf.transpose(tf.reshape(pieces.stack(), [steps, tf.size(words)]))
        unknown = (failed | too_long)[:, None]
        first = tf.where(unknown, tf.constant(self.unknown_id, tf.int64), whole[:, None])
        pieces = tf.concat([first, tf.where(unknown, tf.constant(-1, tf.int64), pieces)], axis=1)
        return tf.ragged.boolean_mask(pieces, pieces >= 0)

    def tokenize_words(self, words):
        """Words (a string tensor or RaggedTensor) -> ids with one more ragged dimension."""
        if isinstance(words, tf.RaggedTensor):
            return words.with_flat_values(self._word_ids(words.flat_values))
        if words.shape.rank == 0:
            return self._word_ids(tf.reshape(words, [1]))[0]
        if words.shape.rank == 1:
            return self._word_ids(words)
        return self.tokenize_words(tf.RaggedTensor.from_tensor(words))

    # Detokenizing ---------------------------------------------------------------------------
    def detokenize(self, ids):
        """RaggedTensor [batch, (ids)] -> 1-D string tensor, as TF Text's `detokenize`."""
        tokens = tf.ragged.map_flat_values(tf.gather, self.vocabulary, ids)
        index = tf.ragged.range(ids.row_lengths()).flat_values
        values = tokens.flat_values
        suffix = tf.strings.regex_full_match(values, "(?s)" + re.escape(self.suffix) + ".+")
        glued = (index > 0) & suffix
        values = tf.where(
            glued,
            tf.strings.regex_replace(values, "^" + re.escape(self.suffix), "", False),
            tf.where(index > 0, tf.strings.join([" ", values]), values),
        )
        return tf.strings.reduce_join(tokens.with_flat_values(values), axis=-1)
