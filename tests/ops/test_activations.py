import math

import keras
import numpy as np
import pytest

import keras_unitscale as ku
from keras_unitscale import ops as uops
from keras_unitscale.ops.activations import canonical_activation, measured_scales
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
    with pytest.raises(ValueError, match="`activation` must be a Keras activation"):
        uops.activation(normal((2, 2)), "no_such_activation")


@pytest.mark.parametrize("name", ["elu", "selu", "softplus", "mish", "leaky_relu", "hard_silu"])
def test_other_keras_activations_are_measured_to_unit_scale(name):
    # The measured constants make output and input gradient unit (unconstrained), as the
    # derived ones do for gelu & co; checked here on samples the measurement never saw.
    out, (gx,) = fn_stds(lambda x: uops.activation(x, name, constraint=None), normal((256, 1024)))
    assert_unit(out, f"{name} output", tol=0.05)
    assert_unit(gx, f"{name} input grad", tol=0.05)


def test_measured_scales_agree_with_the_derived_ones():
    # The measurement, run on functions whose constants are derived in closed form.
    from keras_unitscale.ops.activations import SCALES

    for name in ("gelu", "tanh", "sigmoid", "silu"):
        got = measured_scales(getattr(keras.activations, name))
        assert got == pytest.approx(SCALES[name], rel=1e-3), name
    # SELU is built to keep unit variance: its forward scale is 1.
    assert measured_scales(keras.activations.selu)[0] == pytest.approx(1.0, abs=2e-3)


def test_custom_functions_are_measured_and_bad_ones_refused():
    def cube(x):
        return x * x * x

    # E[x^6] = 15: forward scale 15 ** -0.5; slope 3x^2, E[9 x^4] = 27: 27 ** -0.5.
    key = canonical_activation(cube)
    out = np.asarray(uops.activation(np.array([2.0], "float32"), key, constraint=None))
    assert float(out[0]) == pytest.approx(8.0 * 15**-0.5, rel=2e-3)

    fwd, bwd = measured_scales(cube)
    assert fwd == pytest.approx(15**-0.5, rel=1e-3) and bwd == pytest.approx(27**-0.5, rel=1e-3)
    with pytest.raises(ValueError, match="is not elementwise"):
        canonical_activation(lambda x: x - keras.ops.mean(x))
    with pytest.raises(ValueError, match="no finite, non-zero spread"):
        canonical_activation(lambda x: keras.ops.zeros_like(x))


def test_softmax_is_a_readout_activation_only():
    probs = uops.activation(normal((4, 5)), "softmax")
    np.testing.assert_allclose(np.asarray(probs).sum(-1), 1.0, rtol=1e-6)
    with pytest.raises(ValueError, match="accepted on the last layer, `readout=True`"):
        ku.layers.Dense(2, activation="softmax")
