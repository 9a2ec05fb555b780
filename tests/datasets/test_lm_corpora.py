import numpy as np
import pytest

from keras_unitscale.datasets import load_peoples_daily, load_python_docs

# Python and NumPy only: no Keras backend in the path, so one pass runs it.
pytestmark = pytest.mark.backend_independent


def test_peoples_daily_counts_and_formats():
    raw = load_peoples_daily()
    seg = load_peoples_daily(segmented=True)
    assert [len(s) for s in raw] == [15199, 1900, 1900]
    for r, s in zip(raw, seg):
        assert [t.replace(" ", "") for t in s] == list(r)
    assert "/" not in raw[0][0] or "/" in seg[0][0]  # Tags are gone, words kept.
    text = "".join(raw[0])
    assert "/n " not in text and "/v " not in text


def test_peoples_daily_splits_disjoint_and_seeded():
    a = load_peoples_daily(seed=0)
    sets = [set(s) for s in a]
    assert sum(map(len, sets)) == len(set().union(*sets))
    assert np.array_equal(a[1], load_peoples_daily(seed=0)[1])
    assert not np.array_equal(a[1], load_peoples_daily(seed=1)[1])


def test_python_docs():
    train, val, test = load_python_docs()
    total = len(train) + len(val) + len(test)
    assert total > 1000 and 0.7 < len(train) / total < 0.9
    sets = [set(train), set(val), set(test)]
    assert sum(map(len, sets)) == len(set().union(*sets))
    assert all(p == p.strip() and p for p in train)
    assert any("for" in p for p in train)
