import numpy as np
import pytest

from keras_unitscale import ops as uops
from scale_utils import assert_unit, fn_stds, normal


@pytest.mark.parametrize("rate", [0.1, 0.5])
def test_dropout_keeps_unit_std_both_ways(rate):
    out, (gx,) = fn_stds(lambda x: uops.dropout(x, rate, seed=3), normal((256, 1024)))
    assert_unit(out, "output", tol=0.02)
    assert_unit(gx, "grad", tol=0.02)


def test_dropout_drops_the_expected_fraction():
    y = np.asarray(uops.dropout(np.ones((256, 1024), "float32"), 0.25, seed=1))
    assert abs((y == 0).mean() - 0.25) < 0.01
    np.testing.assert_allclose(y[y != 0], 0.75**-0.5, rtol=1e-6)


@pytest.mark.parametrize("rate", [-0.1, 1.0, "0.5"])
def test_bad_rate(rate):
    with pytest.raises(ValueError, match=r"`rate` must be a float in \[0, 1\)"):
        uops.dropout(normal((2, 2)), rate)
