"""Per-configuration jieba segmenters that never touch jieba's global state.

jieba's module-level functions (`jieba.cut`, `jieba.load_userdict`, ...) share one global
dictionary, so a user word added for one tokenizer would change every other one. Each
configuration here gets its own `jieba.Tokenizer()`. Loading jieba's main dictionary costs
about a second, so it is parsed once per process and shared read-only by the segmenters that
have no user words; a segmenter with user words gets its own copy (~15 ms) to add them to.
"""

import functools
import os
import re

_WORD_FREQ_TAG = re.compile(r"^(\S+)(?:\s+(\d+))?(?:\s+([A-Za-z]+))?$")


def parse_user_dictionary(user_dictionary):
    """Normalises a user dictionary to a tuple of `(word, frequency or None, tag or None)`.

    Args:
        user_dictionary: `None`; a path to a UTF-8 file in jieba's user-dictionary format (one
            `word [frequency] [tag]` a line); or a list of such strings (or bare words).

    Example:

    >>> parse_user_dictionary(["机器学习", "深度学习 50 n"])
    (('机器学习', None, None), ('深度学习', 50, 'n'))
    """
    if user_dictionary is None:
        return ()
    if isinstance(user_dictionary, (str, os.PathLike)):
        source = os.fspath(user_dictionary)
        lines = _read_lines(source)
    elif isinstance(user_dictionary, (list, tuple)):
        source = "`user_dictionary`"
        lines = list(enumerate(user_dictionary, 1))
    else:
        raise TypeError(
            "`user_dictionary` must be None, a file path, or a list of 'word [freq] [tag]' "
            f"strings. Received: {type(user_dictionary).__name__}"
        )
    entries = []
    for lineno, line in lines:
        if isinstance(line, (tuple, list)):
            line = " ".join(str(part) for part in line)
        if not isinstance(line, str):
            raise TypeError(f"{source}, entry {lineno}: expected a string, got {line!r}.")
        line = line.strip().lstrip("\ufeff")
        if not line:
            continue
        match = _WORD_FREQ_TAG.match(line)
        if match is None:
            raise ValueError(
                f"{source}, line {lineno}: expected 'word [frequency] [tag]' with a word "
                f"without spaces (jieba never matches words that contain spaces); got {line!r}."
            )
        word, freq, tag = match.groups()
        if freq is not None and int(freq) == 0:
            # jieba implements frequency 0 as a forced split in process-global HMM state.
            raise ValueError(f"{source}, line {lineno}: frequency must be >= 1; got {line!r}.")
        entries.append((word, int(freq) if freq is not None else None, tag))
    return tuple(entries)


def _read_lines(path):
    with open(path, "rb") as f:
        raw_lines = f.read().split(b"\n")
    lines = []
    for lineno, raw in enumerate(raw_lines, 1):
        try:
            lines.append((lineno, raw.decode("utf-8")))
        except UnicodeDecodeError as e:
            raise ValueError(f"{path}, line {lineno}: not valid UTF-8 ({e.reason}).") from None
    return lines


def format_user_dictionary(entries):
    """Writes entries back in jieba's text format (inverse of `parse_user_dictionary`)."""
    return "".join(
        " ".join(str(p) for p in (word, freq, tag) if p is not None) + "\n"
        for word, freq, tag in entries
    )


@functools.lru_cache(maxsize=1)
def _main_dictionary():
    try:
        import jieba
    except ImportError:
        raise ImportError("JiebaTokenizer needs the 'jieba' package: pip install jieba") from None
    # `gen_pfdict` parses jieba's bundled dictionary directly: no cache file in /tmp, no log.
    return jieba.Tokenizer.gen_pfdict(jieba.get_dict_file())


@functools.lru_cache(maxsize=4)
def get_segmenter(entries=()):
    """Returns a `jieba.Tokenizer` with jieba's main dictionary plus the user `entries`.

    Cached per `entries` tuple; treat the result as read-only (it may be shared).
    """
    import jieba

    freq, total = _main_dictionary()
    segmenter = jieba.Tokenizer()
    segmenter.FREQ = dict(freq) if entries else freq
    segmenter.total = total
    segmenter.initialized = True
    for word, word_freq, tag in entries:
        segmenter.add_word(word, word_freq, tag)
    return segmenter
