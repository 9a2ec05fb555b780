import numpy as np

from keras_unitscale import ops as uops
from scale_utils import assert_unit, fn_stds, normal


def test_embedding_forward_is_a_gather():
    table = normal((10, 4))
    ids = np.array([[1, 9], [0, 1]])
    np.testing.assert_array_equal(np.asarray(uops.embedding(ids, table)), table[ids])


def test_embedding_table_grad_is_unit():
    # 65,536 tokens over a 1,024-word vocabulary: every row is hit about 64 times.
    ids = np.random.default_rng(0).integers(0, 1024, (256, 256))
    out, (_, gtable) = fn_stds(uops.embedding, ids, normal((1024, 64), seed=2))
    assert_unit(out, "output")
    assert_unit(gtable, "table grad")
