import importlib.util
import re

import numpy as np
import pytest

from keras_unitscale.datasets import hsk_sentences, load_zh_en_pairs, load_zh_topics, zh_topic_names


def test_pair_counts_and_alignment():
    splits = load_zh_en_pairs()
    assert [len(zh) for zh, _ in splits] == [3416, 427, 427]
    assert all(len(zh) == len(en) for zh, en in splits)
    pairs = {(r[0], hsk_sentences._REPAIRS.get((r[0], r[1]), r[1]))
             for r in hsk_sentences._records()}
    for zh, en in splits:
        assert all((z, e) in pairs for z, e in zip(zh, en))


def test_pairs_hold_no_junk():
    # The package's junk targets: 82 placeholders and one half-translated sentence.
    reasons = [hsk_sentences._junk_reason(z, e) for z, e, _ in hsk_sentences._records()]
    assert sum(r == "placeholder target" for r in reasons) == 82
    assert sum(r == "untranslated Chinese in the target" for r in reasons) == 1
    zh = np.concatenate([split[0] for split in load_zh_en_pairs()])
    en = np.concatenate([split[1] for split in load_zh_en_pairs()])
    assert len(set(zip(zh, en))) == len(zh) == 4270
    for z, e in zip(zh, en):
        assert "placeholder" not in e.lower() and e.strip() == e and e != z
        assert re.search(r"[a-z]{2}", e), e  # an English word
        assert re.search(r"[\u4e00-\u9fff]", z), z
        assert re.sub(r"[\u4e00-\u9fff]", "", e) == e or e == "At New Year there's a 福 on the door."
    assert "The exam is near; prepare well." in set(en)
    # A Chinese sentence with two targets has two translations, not one junk and one real.
    targets = {}
    for z, e in zip(zh, en):
        targets.setdefault(z, set()).add(e)
    assert all(len(t) <= 2 for t in targets.values())


def test_no_sentence_shared_between_pair_splits():
    splits = load_zh_en_pairs()
    for side in (0, 1):
        sets = [set(split[side]) for split in splits]
        for i in range(3):
            for j in range(i + 1, 3):
                assert not sets[i] & sets[j]


def test_pair_seed_reproducible():
    a, b, c = load_zh_en_pairs(0), load_zh_en_pairs(0), load_zh_en_pairs(3)
    assert all(np.array_equal(x[0], y[0]) for x, y in zip(a, b))
    assert not np.array_equal(a[0][0], c[0][0])


def test_topics():
    names = zh_topic_names()
    assert len(names) == 19 and names == sorted(names)
    splits = load_zh_topics()
    assert [len(x) for x, _ in splits] == [3476, 433, 438]
    texts = np.concatenate([x for x, _ in splits])
    assert len(set(texts)) == len(texts)
    for _, y in splits:
        assert y.dtype == np.int32 and set(y.tolist()) == set(range(19))  # Stratified.


def test_missing_package(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "hsk_sentences_audio" else real_find_spec(name, *a),
    )
    for cached in (hsk_sentences._records, hsk_sentences._pairs, hsk_sentences._topics):
        cached.cache_clear()
    try:
        with pytest.raises(ModuleNotFoundError, match="pip install hsk-sentences-audio"):
            load_zh_en_pairs()
    finally:
        for cached in (hsk_sentences._records, hsk_sentences._pairs, hsk_sentences._topics):
            cached.cache_clear()
