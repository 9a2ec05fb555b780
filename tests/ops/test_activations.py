import math

import numpy as np
import pytest

from keras_unitscale import ops as uops
from scale_utils import assert_near, assert_unit, fn_stds, normal

NAMES = ["gelu", "silu", "relu", "tanh", "sigmoid"]


@pytest.mark.parametrize("name", NAMES)
def test_unconstrained_activation_is_unit_both_ways(name):
    out, (gx,) = fn_stds(lambda x: uops.activation(x, name, constraint=None), normal((256, 1024)))
    assert_unit(out, f"{name} output")
    assert_unit(gx, f"{name} grad")


@pytest.mark.parametrize("name", NAMES)
def test_default_constraint_keeps_forward_unit_and_shifts_grad(name):
    fwd, bwd = uops.ACTIVATION_SCALES[name]
    out, (gx,) = fn_stds(lambda x: uops.activation(x, name), normal((256, 1024)))
    assert_unit(out, f"{name} output")
    assert_near(gx, fwd / bwd, 0.1, f"{name} grad under to_output_scale")


def test_constants_are_those_of_the_functions():
    # Exact GELU: 1/std(gelu(x)) and 1/sqrt(E[gelu'(x)^2]) for x ~ N(0, 1).
    assert uops.ACTIVATION_SCALES["gelu"] == pytest.approx((1.7009, 1.4811), abs=1e-3)
    # ReLU has closed forms: var = 1/2 - 1/(2 pi), E[relu'^2] = 1/2.
    assert uops.ACTIVATION_SCALES["relu"][0] == pytest.approx((0.5 - 0.5 / math.pi) ** -0.5, 1e-4)
    assert uops.ACTIVATION_SCALES["relu"][1] == pytest.approx(2**0.5, 1e-4)


def test_named_wrappers_match_activation():
    x = normal((4, 8))
    for name in NAMES:
        np.testing.assert_allclose(
            np.asarray(getattr(uops, name)(x)), np.asarray(uops.activation(x, name)), rtol=1e-6
        )


def test_unknown_activation_names_the_argument():
    with pytest.raises(ValueError, match="`activation` must be one of"):
        uops.activation(normal((2, 2)), "softplus")
