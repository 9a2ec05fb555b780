import pytest

from keras_unitscale import ops as uops


def test_named_constraints():
    assert uops.apply_constraint("to_output_scale", 0.5, 2.0) == (0.5, 0.5)
    assert uops.apply_constraint("to_grad_input_scale", 0.5, 2.0) == (2.0, 2.0)
    assert uops.apply_constraint("gmean", 0.5, 2.0) == (1.0, 1.0)
    assert uops.apply_constraint(None, 0.5, 2.0) == (0.5, 2.0)


def test_several_grad_scales_use_their_geometric_mean():
    out = uops.apply_constraint("to_grad_input_scale", 1.0, 2.0, 8.0)
    assert out == pytest.approx((4.0, 4.0, 4.0))


def test_unknown_constraint_names_the_argument():
    with pytest.raises(ValueError, match="`constraint` must be one of"):
        uops.apply_constraint("to_output", 1.0, 1.0)
