"""Graded Chinese sentences with English translations and topics (hsk-sentences-audio)."""

import functools
import json
import re

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


# Targets in the package that are not translations: "placeholder" (65 records),
# "placeholder-p1" ... "placeholder-p14" and "placeholder-q1" (15), "PH" (2).
_PLACEHOLDER = re.compile(r"placeholder(-[a-z]\d+)?|ph", re.IGNORECASE)
# Targets left partly untranslated, repaired by hand.
_REPAIRS = {("考试接近了，要认真准备。", "The exam is近; prepare well."):
            "The exam is near; prepare well."}
# Chinese characters a target may contain: one it names (门上有个福字, "a 福 on the door").
_QUOTED = {("过年时门上有个福字。", "At New Year there's a 福 on the door.")}
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff\u3000-\u303f\uff00-\uffef]")


def _junk_reason(zh, en):
    """Why a pair is unusable for translation, or None for a good pair."""
    if _PLACEHOLDER.fullmatch(en):
        return "placeholder target"
    if not re.search(r"[A-Za-z]{2}", en):
        return "target without an English word"
    if _CJK.search(en) and (zh, en) not in _QUOTED:
        return "untranslated Chinese in the target"
    if not _CJK.search(zh):
        return "source without Chinese"
    return None


@functools.lru_cache(maxsize=1)
def _pairs():
    seen, zh, en = set(), [], []
    for z, e, _ in _records():
        e = _REPAIRS.get((z, e), e)
        if _junk_reason(z, e) is None and (z, e) not in seen:
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
    4,270 distinct pairs. Left out: 82 records whose English is a placeholder, not a
    translation ("placeholder", "placeholder-p1" and the like, "PH"), and 2 exact duplicates;
    one target left partly in Chinese is repaired ("The exam is近" -> "near"). Some sentences
    have two translations and some translations serve two sentences; pairs linked that way
    are kept in the same split, so no Chinese or English sentence appears in two splits.
    Split about 80/10/10 with `seed` (3,416 / 427 / 427 for seed 0).

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
    4270
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
