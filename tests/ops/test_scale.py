import keras
import numpy as np
import pytest

from keras_unitscale import ops as uops
from keras_unitscale.backend import backend_name, vjp
from scale_utils import normal


def _grad(fn, x, upstream):
    out, pullback = vjp(fn, x)
    return keras.ops.convert_to_numpy(out), keras.ops.convert_to_numpy(pullback(upstream)[0])


@pytest.mark.parametrize("scale", [3.0, 0.25])
def test_scale_fwd_scales_forward_only(scale):
    x, g = normal((8, 5)), normal((8, 5), seed=1)
    out, grad = _grad(lambda x: uops.scale_fwd(x, scale), x, g)
    np.testing.assert_allclose(out, x * scale, rtol=1e-6)
    np.testing.assert_allclose(grad, g, rtol=1e-6)


@pytest.mark.parametrize("scale", [3.0, 0.25])
def test_scale_bwd_scales_backward_only(scale):
    x, g = normal((8, 5)), normal((8, 5), seed=1)
    out, grad = _grad(lambda x: uops.scale_bwd(x, scale), x, g)
    np.testing.assert_allclose(out, x, rtol=1e-6)
    np.testing.assert_allclose(grad, g * scale, rtol=1e-6)


def test_tensor_scales_work_like_python_scales():
    x, g = normal((8, 5)), normal((8, 5), seed=1)
    s = keras.ops.convert_to_tensor(2.0)
    out, grad = _grad(lambda x: uops.scale_bwd(uops.scale_fwd(x, s), s * 2.0), x, g)
    np.testing.assert_allclose(out, 2 * x, rtol=1e-6)
    np.testing.assert_allclose(grad, 4 * g, rtol=1e-6)


def test_scales_compose_under_jit():
    x = normal((4, 3))
    if backend_name() == "jax":
        import jax

        f = jax.jit(jax.grad(lambda x: keras.ops.sum(uops.scale_bwd(uops.scale_fwd(x, 2.0), 5.0))))
    else:
        import tensorflow as tf

        @tf.function(jit_compile=True)
        def f(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = keras.ops.sum(uops.scale_bwd(uops.scale_fwd(x, 2.0), 5.0))
            return tape.gradient(y, x)

    np.testing.assert_allclose(keras.ops.convert_to_numpy(f(keras.ops.convert_to_tensor(x))), 5.0)


def test_leading_size_static_and_dynamic():
    assert uops.leading_size(np.zeros((4, 6, 3))) == 24
    assert uops.leading_size(np.zeros((4, 6)), trailing_dims=0) == 24
    if backend_name() == "tensorflow":
        import tensorflow as tf

        @tf.function(input_signature=[tf.TensorSpec([None, 3])])
        def n(x):
            return uops.leading_size(x)

        assert float(n(tf.zeros((7, 3)))) == 7.0


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_scale_is_rejected(bad):
    with pytest.raises(ValueError, match="`scale` must be a finite number"):
        uops.scale_fwd(normal((2,)), bad)
