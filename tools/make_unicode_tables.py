"""Writes keras_unitscale/tokenizers/_core_unicode_tables.py from TF Text's own results.

    python tools/make_unicode_tables.py

The core-TensorFlow WordPiece path (`keras_unitscale/tokenizers/_core_word_piece.py`) maps
text one character at a time where KerasHub calls TF Text's `case_fold_utf8` (NFKC_Casefold)
and `normalize_utf8(..., "NFD")`. This script applies those two ops to every code point
(surrogates excepted) and records each one whose result differs from the code point itself,
so the tables follow TF Text's ICU version exactly. Hangul syllables, whose NFD is
arithmetic, are left out of the NFD table (the loader derives them).
"""

import os

import numpy as np
import tensorflow as tf
import tensorflow_text as tf_text

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.path.join(ROOT, "keras_unitscale", "tokenizers", "_core_unicode_tables.py")
HANGUL = range(0xAC00, 0xAC00 + 11172)


def changed(op):
    points = np.array([c for c in range(0x110000) if not 0xD800 <= c < 0xE000], np.int32)
    chars = tf.strings.unicode_encode(tf.expand_dims(points, 1), "UTF-8")
    mapped = tf.strings.unicode_decode(op(chars), "UTF-8").to_list()
    return {int(c): m for c, m in zip(points, mapped) if m != [c]}


def lines(table, skip=()):
    return "\n".join(
        f"{c:x}:{' '.join(f'{m:x}' for m in table[c])}" for c in sorted(table) if c not in skip)


def main():
    casefold = changed(tf_text.case_fold_utf8)
    nfd = changed(lambda chars: tf_text.normalize_utf8(chars, "NFD"))
    with open(TARGET, "w", encoding="utf-8", newline="\n") as f:
        f.write(f'''"""Made by tools/make_unicode_tables.py from TF Text {tf_text.__version__}; do not edit.

Each line is `code point:mapped code points` (hexadecimal), for the code points that TF Text
changes when applied to that single character: `CASEFOLD` (`case_fold_utf8`, NFKC_Casefold;
an empty mapping drops the character) and `NFD` (`normalize_utf8(..., "NFD")`, Hangul
syllables left out: they decompose arithmetically).
"""

CASEFOLD = """
{lines(casefold)}
"""

NFD = """
{lines(nfd, skip=HANGUL)}
"""
''')
    print(f"{len(casefold)} case-fold and {len(nfd)} NFD entries -> {TARGET}")


if __name__ == "__main__":
    main()
