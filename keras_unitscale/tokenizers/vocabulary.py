"""Vocabulary building: count tokens, keep the frequent ones, special tokens first."""

import collections

PAD_TOKEN = "[PAD]"
UNKNOWN_TOKEN = "[UNK]"
START_TOKEN = "[START]"
END_TOKEN = "[END]"
CLS_TOKEN = "[CLS]"
# Padding is id 0 so that `keras.layers.Embedding(mask_zero=True)` and friends agree with us.
SPECIAL_TOKENS = (PAD_TOKEN, UNKNOWN_TOKEN, START_TOKEN, END_TOKEN, CLS_TOKEN)
# A run of whitespace is one ordinary token, written as SentencePiece writes it, so that it can
# sit in a one-token-a-line vocabulary file and in space-separated pre-segmented text.
SPACE_TOKEN = "\u2581"


def build_vocabulary(token_lists, min_frequency=1, max_size=None, special_tokens=SPECIAL_TOKENS):
    """Builds a vocabulary list from already-segmented text.

    The special tokens come first, in the order given (so with the defaults `[PAD]` is id 0,
    `[UNK]` 1, `[START]` 2, `[END]` 3 and `[CLS]` 4). The other tokens follow by descending
    count, ties broken by the token's code points, so the result is deterministic.

    Args:
        token_lists: an iterable of token sequences (each an iterable of strings).
        min_frequency: int >= 1. Tokens seen fewer times are left out (they will map to the
            unknown id).
        max_size: `None` or int. The largest vocabulary size, special tokens included.
        special_tokens: sequence of distinct strings placed first.

    Returns:
        A list of distinct strings.

    Example:

    >>> build_vocabulary([["我", "喜欢", "猫"], ["我", "喜欢", "狗"]], min_frequency=2)
    ['[PAD]', '[UNK]', '[START]', '[END]', '[CLS]', '喜欢', '我']
    """
    if isinstance(min_frequency, bool) or not isinstance(min_frequency, int) or min_frequency < 1:
        raise ValueError(f"`min_frequency` must be an int >= 1. Received: {min_frequency!r}")
    special_tokens = list(special_tokens)
    if len(set(special_tokens)) != len(special_tokens):
        raise ValueError(f"`special_tokens` must be distinct. Received: {special_tokens}")
    if max_size is not None and (
        isinstance(max_size, bool)
        or not isinstance(max_size, int)
        or max_size < len(special_tokens)
    ):
        raise ValueError(
            f"`max_size` must be None or an int >= {len(special_tokens)} (the number of special "
            f"tokens). Received: {max_size!r}"
        )
    if isinstance(token_lists, (str, bytes)):
        raise TypeError("`token_lists` must be an iterable of token sequences, not a string.")
    counts = collections.Counter()
    for tokens in token_lists:
        if isinstance(tokens, (str, bytes)):
            raise TypeError(
                "`token_lists` must hold token sequences (lists of strings); found a string "
                f"{tokens!r:.40}. Segment text first, e.g. with `JiebaTokenizer.segment`."
            )
        counts.update(tokens)
    for token in special_tokens:
        counts.pop(token, None)
    kept = sorted(
        (token for token, count in counts.items() if count >= min_frequency),
        key=lambda token: (-counts[token], token),
    )
    vocabulary = special_tokens + kept
    if max_size is not None:
        vocabulary = vocabulary[:max_size]
    return vocabulary


def check_vocabulary(vocabulary, required_tokens=SPECIAL_TOKENS):
    """Validates a vocabulary list; returns it as a new list of strings."""
    if isinstance(vocabulary, (str, bytes)) or not hasattr(vocabulary, "__iter__"):
        raise TypeError(
            f"`vocabulary` must be a list of strings or a file path. Received: {vocabulary!r:.80}"
        )
    vocabulary = list(vocabulary)
    seen = set()
    for i, token in enumerate(vocabulary):
        if not isinstance(token, str) or not token:
            raise ValueError(
                f"`vocabulary` entries must be non-empty strings; entry {i} is {token!r}."
            )
        if "\n" in token or "\r" in token:
            raise ValueError(
                f"`vocabulary` entries cannot contain line breaks; entry {i} is {token!r}."
            )
        if token in seen:
            raise ValueError(f"`vocabulary` entries must be distinct; {token!r} appears twice.")
        seen.add(token)
    missing = [t for t in required_tokens if t not in seen]
    if missing:
        raise ValueError(
            f"`vocabulary` must contain the special tokens {list(required_tokens)}; missing "
            f"{missing}. Build one with `build_vocabulary` or `from_corpus`."
        )
    return vocabulary


def read_vocabulary_file(path):
    """Reads one token per line (UTF-8); only the line break is stripped, so " " survives."""
    tokens = []
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise ValueError(f"{path}, line {lineno}: not valid UTF-8 ({e.reason}).") from None
            tokens.append(line.rstrip("\r\n") if line.endswith("\n") else line)
    return tokens


def write_vocabulary_file(vocabulary, path):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for token in vocabulary:
            f.write(token + "\n")
