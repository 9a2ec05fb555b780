"""Helpers for the statistical unit-scale checks (Graphcore's pattern).

Fixed seed, unit-normal inputs at sizes near 256 x 1024, a fixed unit-normal upstream
gradient; then the std of the output, of every input gradient and of every weight gradient.
"""

import keras
import numpy as np

from keras_unitscale.backend import layer_vjp, vjp


def normal(shape, seed=0, dtype="float32"):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def std(x):
    return float(np.std(keras.ops.convert_to_numpy(x).astype("float64")))


def fn_stds(fn, *inputs, seed=1):
    """`(output_std, [input_grad_std or None])` of `fn(*inputs)` under a unit upstream grad."""
    out, pullback = vjp(fn, *inputs)
    # A scalar (a loss) is pulled back from 1; anything else from a unit-normal gradient.
    upstream = normal(tuple(out.shape), seed=seed) if len(out.shape) else np.float32(1.0)
    grads = pullback(upstream)
    return std(out), [None if g is None else std(g) for g in grads]


def layer_stds(layer, *inputs, seed=1, **call_kwargs):
    """`(output_std, input_grad_stds, {weight_path: grad_std})` for a Keras layer."""
    out, pullback = layer_vjp(layer, *inputs, **call_kwargs)
    upstream = normal(tuple(out.shape), seed=seed) if len(out.shape) else np.float32(1.0)
    in_grads, w_grads = pullback(upstream)
    weights = {w.path: std(g) for w, g in zip(layer.trainable_weights, w_grads)}
    return std(out), [None if g is None else std(g) for g in in_grads], weights


def assert_near(value, expected, tol, what):
    assert abs(value - expected) <= tol, f"{what}: std {value:.4f}, expected {expected} +/- {tol}"


def assert_unit(value, what, tol=0.1):
    assert_near(value, 1.0, tol, what)


def one_step_recurrent_grad_ratio(layer_class, units=128, batch=256, warm_steps=32):
    """`std(recurrent_kernel grad) / std(kernel grad)` of a recurrent layer on one step from a
    state warmed up by `warm_steps` steps of the layer itself (unit-normal inputs and
    upstream). The derivation's U factor promises 1."""
    warm = layer_class(units, return_state=True)
    _, *state = warm(normal((batch, warm_steps, units), seed=5))
    layer = layer_class(units, return_sequences=True)
    layer.build((batch, 1, units))
    layer.set_weights(warm.get_weights())
    _, _, weights = layer_stds(layer, normal((batch, 1, units), seed=6), initial_state=state)
    grads = {path.split("/")[-1]: s for path, s in weights.items()}
    return grads["recurrent_kernel"] / grads["kernel"]
