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


def _reference_linear(x, w, b, out_scale, grad_in_scale, batch, mult=1.0):
    """The rule as written in UNIT_SCALING.md: `scale_bwd` on each input, the plain matmul,
    `scale_fwd` on the output (what `linear` computed before it got its own backward)."""
    from keras import ops

    x = uops.scale_bwd(x, grad_in_scale)
    w = uops.scale_bwd(w, batch**-0.5)
    y = uops.scale_fwd(ops.matmul(x, w), out_scale)
    if b is not None:
        y = y + uops.scale_bwd(b, batch**-0.5)
    return uops.scale_fwd(y, mult)


def _outputs_and_grads(fn, *inputs):
    from keras_unitscale.backend import vjp

    out, pullback = vjp(fn, *inputs)
    grads = pullback(normal(tuple(out.shape), seed=7))
    return [np.asarray(out)] + [np.asarray(g) for g in grads]


@pytest.mark.parametrize("rows", [(3,), (2, 5), (256,)])  # fewer / more rows than the fans
@pytest.mark.parametrize("constraint", ["to_output_scale", "to_grad_input_scale", "gmean", None])
def test_linear_equals_the_rule_exactly(rows, constraint):
    fan_in, fan_out = 24, 40
    x, w, b = normal(rows + (fan_in,)), normal((fan_in, fan_out), seed=2), normal((fan_out,), seed=3)
    batch = int(np.prod(rows))
    out_scale, grad_in_scale = uops.apply_constraint(constraint, fan_in**-0.5, fan_out**-0.5)
    ours = _outputs_and_grads(lambda x, w, b: uops.linear(x, w, b, constraint=constraint), x, w, b)
    reference = _outputs_and_grads(
        lambda x, w, b: _reference_linear(x, w, b, out_scale, grad_in_scale, batch), x, w, b
    )
    for name, a, r in zip(["output", "input grad", "weight grad", "bias grad"], ours, reference):
        np.testing.assert_allclose(a, r, rtol=1e-5, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("rows", [(4,), (300,)])
def test_readout_with_mult_equals_scaling_its_output(rows):
    fan_in, fan_out = 32, 50
    x, w, b = normal(rows + (fan_in,)), normal((fan_in, fan_out), seed=2), normal((fan_out,), seed=3)
    ours = _outputs_and_grads(lambda x, w, b: uops.readout(x, w, b, mult=8.0), x, w, b)
    reference = _outputs_and_grads(
        lambda x, w, b: _reference_linear(x, w, b, 1.0 / fan_in, fan_out**-0.5, rows[0], 8.0),
        x, w, b,
    )
    for name, a, r in zip(["output", "input grad", "weight grad", "bias grad"], ours, reference):
        np.testing.assert_allclose(a, r, rtol=1e-5, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("mult", [0.0, -1.0, float("nan"), float("inf"), "2", True])
def test_readout_rejects_a_bad_mult(mult):
    with pytest.raises(ValueError, match="`mult` must be a positive number"):
        uops.readout(normal((2, 4)), normal((4, 3)), mult=mult)


def test_linear_with_a_batch_only_known_at_run_time():
    """The weight-gradient scale is then a tensor (`leading_size`); it must equal the static
    case. TensorFlow: a `None` batch in a `tf.function`; JAX: a symbolic batch in `jax.export`."""
    from keras_unitscale.backend import backend_name

    x, w, g = normal((6, 24)), normal((24, 40), seed=2), normal((6, 40), seed=7)
    static = _outputs_and_grads(lambda x, w: uops.linear(x, w), x, w)
    if backend_name() == "tensorflow":
        import tensorflow as tf

        @tf.function(input_signature=[tf.TensorSpec([None, 24]), tf.TensorSpec([24, 40]),
                                      tf.TensorSpec([None, 40])])
        def run(x, w, g):
            with tf.GradientTape() as tape:
                tape.watch([x, w])
                y = uops.linear(x, w)
            return [y] + tape.gradient(y, [x, w], output_gradients=g)

        dynamic = [t.numpy() for t in run(x, w, g)]
    else:
        import jax
        from jax import export

        def run(x, w, g):
            y, pullback = jax.vjp(lambda x, w: uops.linear(x, w), x, w)
            return (y,) + pullback(g)

        b = export.symbolic_shape("b")[0]
        exported = export.export(jax.jit(run))(
            jax.ShapeDtypeStruct((b, 24), "float32"), jax.ShapeDtypeStruct((24, 40), "float32"),
            jax.ShapeDtypeStruct((b, 40), "float32"),
        )
        dynamic = [np.asarray(t) for t in exported.call(x, w, g)]
    for name, a, r in zip(["output", "input grad", "weight grad"], dynamic, static):
        np.testing.assert_allclose(a, r, rtol=1e-5, atol=1e-6, err_msg=name)
