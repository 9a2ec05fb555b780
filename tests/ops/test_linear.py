import numpy as np
import pytest

from keras_unitscale import ops as uops
from scale_utils import assert_near, assert_unit, fn_stds, normal

BATCH, FAN_IN, FAN_OUT = 256, 1024, 512


def test_linear_unconstrained_is_unit_everywhere():
    x, w, b = normal((BATCH, FAN_IN)), normal((FAN_IN, FAN_OUT), seed=2), np.zeros(FAN_OUT, "float32")
    out, (gx, gw, gb) = fn_stds(lambda x, w, b: uops.linear(x, w, b, constraint=None), x, w, b)
    assert_unit(out, "output")
    assert_unit(gx, "input grad")
    assert_unit(gw, "weight grad")
    assert_unit(gb, "bias grad")


@pytest.mark.parametrize(
    "constraint, out_expected, gx_expected",
    [
        ("to_output_scale", 1.0, (FAN_OUT / FAN_IN) ** 0.5),
        ("to_grad_input_scale", (FAN_IN / FAN_OUT) ** 0.5, 1.0),
        ("gmean", (FAN_IN / FAN_OUT) ** 0.25, (FAN_OUT / FAN_IN) ** 0.25),
    ],
)
def test_linear_constraints_trade_output_for_input_grad(constraint, out_expected, gx_expected):
    x, w = normal((BATCH, FAN_IN)), normal((FAN_IN, FAN_OUT), seed=2)
    out, (gx, gw) = fn_stds(lambda x, w: uops.linear(x, w, constraint=constraint), x, w)
    assert_near(out, out_expected, 0.1, "output")
    assert_near(gx, gx_expected, 0.1, "input grad")
    assert_unit(gw, "weight grad")  # weight gradients are never constrained


def test_linear_folds_leading_axes_into_batch():
    x, w = normal((16, 16, FAN_IN)), normal((FAN_IN, FAN_OUT), seed=2)
    out, (gx, gw) = fn_stds(lambda x, w: uops.linear(x, w, constraint=None), x, w)
    assert_unit(out, "output")
    assert_unit(gw, "weight grad")


def test_readout_is_small_forward_and_unit_backward():
    x, w = normal((BATCH, FAN_IN)), normal((FAN_IN, FAN_OUT), seed=2)
    out, (gx, gw) = fn_stds(uops.readout, x, w)
    assert_near(out, FAN_IN**-0.5, 0.1 * FAN_IN**-0.5, "readout output")
    assert_unit(gx, "input grad")
    assert_unit(gw, "weight grad")


def test_matmul_of_two_activations():
    a, b = normal((8, 128, 512)), normal((8, 512, 256), seed=2)
    out, (ga, gb) = fn_stds(lambda a, b: uops.matmul(a, b, constraint=None), a, b)
    assert_unit(out, "output")
    assert_unit(ga, "left grad")
    assert_unit(gb, "right grad")
    out, (ga, gb) = fn_stds(uops.matmul, a, b)
    assert_near(ga, (256 / 512) ** 0.5, 0.1, "left grad, constrained")
    assert_near(gb, (128 / 512) ** 0.5, 0.1, "right grad, constrained")


def test_mismatched_fan_in_is_a_clear_error():
    with pytest.raises(ValueError, match="last dimension is 8"):
        uops.linear(normal((4, 7)), normal((8, 3)))
    with pytest.raises(ValueError, match="rank >= 2"):
        uops.matmul(normal((4,)), normal((4, 3)))
