"""Graded Chinese sentences with English translations and topics (hsk-sentences-audio)."""

import functools
import json

import numpy as np

from keras_unitscale.datasets._package_data import package_file
from keras_unitscale.datasets.splits import group_split, stratified_split

_PIP_NAME = "hsk-sentences-audio"


@functools.lru_cache(maxsize=1)
def _records():
    path = package_file("hsk_sentences_audio", "data/sentences.json", _PIP_NAME)
    try:
        with open(path, encoding="utf-8") as f:
            records = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} is not valid UTF-8 JSON: {e}") from None
    out = []
    for r in records:
        zh, en = r.get("chinese", "").strip(), r.get("translation", {}).get("en", "").strip()
        if zh and en:
            out.append((zh, en, r.get("topic")))
    return tuple(out)


@functools.lru_cache(maxsize=1)
def _pairs():
    seen, zh, en = set(), [], []
    for z, e, _ in _records():
        if (z, e) not in seen:
            seen.add((z, e))
            zh.append(z)
            en.append(e)
    return np.array(zh, dtype=object), np.array(en, dtype=object)


def _linked_groups(zh, en):
    """Group ids such that pairs sharing a Chinese or an English sentence share a group."""
    parent = list(range(len(zh)))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first = {}
    for i in range(len(zh)):
        for key in (("zh", zh[i]), ("en", en[i])):
            if key in first:
                parent[find(i)] = find(first[key])
            else:
                first[key] = i
    return np.array([find(i) for i in range(len(zh))])


def load_zh_en_pairs(seed=0):
    """Loads Chinese sentences paired with English translations, for translation models.

    From `hsk_sentences_audio/data/sentences.json` in the `hsk-sentences-audio` package:
    4,354 records of HSK 3.0 graded sentences (levels 1-6, ~9 characters on average) give
    4,352 distinct pairs. Some sentences have two translations and some translations serve
    two sentences; pairs linked that way are kept in the same split, so no Chinese or English
    sentence appears in two splits. Split about 80/10/10 with `seed` (3,482 / 435 / 435 for
    seed 0).

    Args:
        seed: int, the split's random seed.

    Returns:
        `(zh_train, en_train), (zh_val, en_val), (zh_test, en_test)`, NumPy object arrays
        of str, row i of `zh` translated by row i of `en`.

    Raises:
        ModuleNotFoundError: the package is missing (`pip install hsk-sentences-audio`).

    Example:

    >>> (zh_train, en_train), (zh_val, en_val), (zh_test, en_test) = load_zh_en_pairs()
    >>> len(zh_train) + len(zh_val) + len(zh_test)
    4352
    """
    zh, en = _pairs()
    splits = group_split(_linked_groups(zh, en), seed)
    return tuple((zh[idx].copy(), en[idx].copy()) for idx in splits)


@functools.lru_cache(maxsize=1)
def _topics():
    labels_of = {}
    for zh, _, topic in _records():
        if topic:
            labels_of.setdefault(zh, set()).add(topic)
    # Sentences filed under two topics are ambiguous; keep those with one.
    texts = [zh for zh, topics in labels_of.items() if len(topics) == 1]
    names = sorted({t for topics in labels_of.values() for t in topics})
    index = {name: i for i, name in enumerate(names)}
    labels = np.array([index[next(iter(labels_of[t]))] for t in texts], dtype=np.int32)
    return np.array(texts, dtype=object), labels, tuple(names)


def zh_topic_names():
    """The 19 topic names of `load_zh_topics`, in label order (index = label).

    >>> zh_topic_names()[:3]
    ['daily_actions', 'family', 'feelings']
    """
    return list(_topics()[2])


def load_zh_topics(seed=0):
    """Loads the HSK sentences labelled by topic (19 classes), for Chinese classification.

    The same corpus as `load_zh_en_pairs`; each distinct Chinese sentence with exactly one
    topic is kept (4,347 sentences), labelled with the topic's index in `zh_topic_names()`.
    Split 80/10/10 per topic with `seed` (3,476 / 433 / 438). Classes are unbalanced (from 503
    down to 77 sentences).

    Returns:
        `(x_train, y_train), (x_val, y_val), (x_test, y_test)`: object arrays of str and
        int32 label arrays.

    Example:

    >>> (x_train, y_train), _, _ = load_zh_topics()
    >>> zh_topic_names()[int(y_train[0])] in zh_topic_names()
    True
    """
    texts, labels, _ = _topics()
    return tuple((texts[idx].copy(), labels[idx].copy()) for idx in stratified_split(labels, seed))
