import numpy as np
import pytest

from keras_unitscale.datasets import group_split, stratified_split


def test_stratified_split_partitions_and_keeps_shares():
    labels = np.array([0] * 100 + [1] * 50 + [2] * 10)
    parts = stratified_split(labels, seed=5)
    assert sorted(np.concatenate(parts).tolist()) == list(range(160))
    assert [int((labels[parts[0]] == k).sum()) for k in range(3)] == [80, 40, 8]


def test_group_split_keeps_groups_together():
    groups = np.repeat(np.arange(50), 3)
    parts = group_split(groups, seed=2)
    assert sorted(np.concatenate(parts).tolist()) == list(range(150))
    owners = [set(groups[p].tolist()) for p in parts]
    assert not (owners[0] & owners[1] or owners[0] & owners[2] or owners[1] & owners[2])
    assert [len(p) for p in parts] == [120, 15, 15]


def test_bad_fractions():
    with pytest.raises(ValueError, match="fractions"):
        stratified_split([0, 1], fractions=(0.5, 0.5))
