import math

import pytest

from keras_unitscale import ops as uops
from scale_utils import assert_near, assert_unit, fn_stds, normal


def test_softmax_unconstrained_is_unit_both_ways():
    out, (gx,) = fn_stds(lambda x: uops.softmax(x, constraint=None), normal((256, 1024)))
    assert_unit(out, "output")
    assert_unit(gx, "grad")


def test_softmax_default_constraint():
    out, (gx,) = fn_stds(uops.softmax, normal((256, 1024)))
    assert_unit(out, "output")
    assert_near(gx, math.sqrt(math.e / (math.e - 1)), 0.1, "grad under to_output_scale")


def test_softmax_scales_closed_form():
    expected = (10 / math.sqrt(math.e - 1), 10 / math.sqrt(math.e))
    assert uops.softmax_scales(10) == pytest.approx(expected)
