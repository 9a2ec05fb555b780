"""Fixed, seeded train/validation/test splits (80/10/10 by default)."""

import numpy as np

DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)


def _check(n, seed, fractions):
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"`seed` must be an int. Received: {seed!r}")
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(
            f"`fractions` must be three non-negative numbers summing to 1: {fractions}"
        )
    return np.random.default_rng(int(seed))


def stratified_split(labels, seed=0, fractions=DEFAULT_FRACTIONS):
    """Splits indices so that each label keeps its share in every split.

    Each label's items are shuffled with `seed`, and cut at `round(fraction * count)`; each
    split is then shuffled so labels are interleaved. Returns three int64 index arrays.

    Example:

    >>> train, val, test = stratified_split([0] * 10 + [1] * 10, seed=0)
    >>> len(train), len(val), len(test)
    (16, 2, 2)
    """
    labels = np.asarray(labels)
    rng = _check(len(labels), seed, fractions)
    parts = ([], [], [])
    for label in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == label))
        n_train = int(round(fractions[0] * len(idx)))
        n_val = int(round(fractions[1] * len(idx)))
        for part, chunk in zip(parts, np.split(idx, [n_train, n_train + n_val])):
            part.append(chunk)
    return tuple(rng.permutation(np.concatenate(p)).astype(np.int64) for p in parts)


def group_split(groups, seed=0, fractions=DEFAULT_FRACTIONS):
    """Splits indices so that all items of a group land in the same split.

    Groups are shuffled with `seed` and dealt out in that order: a group goes to train while
    the items dealt so far, counting half of the group itself, are under `fractions[0]` of
    all items, then to validation while under `fractions[0] + fractions[1]`, then to test.
    Returns three int64 index arrays, each shuffled.

    Example:

    >>> train, val, test = group_split(["a", "a", "b", "c", "d", "e", "f", "g", "h", "i"], seed=1)
    >>> [len(train), len(val), len(test)]
    [8, 1, 1]
    """
    groups = np.asarray(groups)
    rng = _check(len(groups), seed, fractions)
    unique, inverse = np.unique(groups, return_inverse=True)
    members = [[] for _ in unique]
    for i, g in enumerate(inverse.ravel()):
        members[g].append(i)
    bounds = (fractions[0] * len(groups), (fractions[0] + fractions[1]) * len(groups))
    parts, filled = ([], [], []), 0
    for g in rng.permutation(len(unique)):
        middle = filled + len(members[g]) / 2
        target = 0 if middle < bounds[0] else 1 if middle < bounds[1] else 2
        parts[target].extend(members[g])
        filled += len(members[g])
    return tuple(rng.permutation(np.array(p, dtype=np.int64)) for p in parts)
