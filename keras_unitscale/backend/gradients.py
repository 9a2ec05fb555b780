"""Gradients written once for every backend.

- `custom_gradient`: a portable wrapper over `keras.ops.custom_gradient`. TensorFlow hands the
  gradient function one positional upstream per output (and a `variables` keyword when the
  function reads variables); JAX hands it one positional argument, a tuple for several
  outputs. Our gradient functions always receive one upstream argument (a tuple when the
  function has several outputs) and return a tuple with one gradient per input.
- `vjp` and `layer_vjp`: forward values plus a pull-back, for scale analysis and tests.
"""

import keras
from keras import ops

from keras_unitscale.backend._common import backend_name


def _unwrap(value):
    # Reading the variable outside the custom-gradient function keeps TensorFlow from asking
    # for a `variables=` gradient and keeps JAX from closing over a Keras variable.
    if isinstance(value, keras.Variable):
        return value.value
    return value


def custom_gradient(fn):
    """Wraps `fn(*tensors) -> (outputs, grad)` into a differentiable function.

    `grad(upstream)` receives one upstream gradient (a tuple when `fn` returns several
    outputs) and returns a tuple with one gradient per positional input. Call the result with
    positional tensor arguments only.
    """

    @keras.ops.custom_gradient
    def wrapped(*args):
        outputs, grad = fn(*args)

        def grad_fn(*upstream, **unused_kwargs):
            upstream = upstream[0] if len(upstream) == 1 else tuple(upstream)
            grads = grad(upstream)
            return tuple(grads)

        return outputs, grad_fn

    def call(*args):
        return wrapped(*[_unwrap(a) for a in args])

    return call


def _is_float(x):
    return "float" in str(keras.backend.standardize_dtype(x.dtype))


def vjp(fn, *primals):
    """Returns `(outputs, pullback)`; `pullback(cotangent)` gives one gradient per primal.

    Non-float primals (token ids) get `None` as their gradient.
    """
    backend = backend_name()
    primals = [ops.convert_to_tensor(p) for p in primals]
    float_idx = [i for i, p in enumerate(primals) if _is_float(p)]
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape(persistent=True) as tape:
            for i in float_idx:
                tape.watch(primals[i])
            outputs = fn(*primals)

        def pullback(cotangent):
            grads = tape.gradient(
                outputs, [primals[i] for i in float_idx], output_gradients=cotangent
            )
            return _scatter(grads, float_idx, len(primals))

        return outputs, pullback
    if backend == "jax":
        import jax

        def float_fn(*float_args):
            args = list(primals)
            for i, a in zip(float_idx, float_args):
                args[i] = a
            return fn(*args)

        outputs, jax_pullback = jax.vjp(float_fn, *[primals[i] for i in float_idx])

        def pullback(cotangent):
            return _scatter(jax_pullback(cotangent), float_idx, len(primals))

        return outputs, pullback
    raise NotImplementedError(
        f"keras_unitscale supports the 'tensorflow' and 'jax' backends, not {backend!r}."
    )


def _scatter(grads, idx, n):
    out = [None] * n
    for i, g in zip(idx, grads):
        out[i] = g
    return tuple(out)


def layer_vjp(layer, *inputs, **call_kwargs):
    """Runs `layer(*inputs)` and returns `(outputs, pullback)`.

    `pullback(cotangent)` returns `(input_grads, weight_grads)`, the weight gradients aligned
    with `layer.trainable_variables`. The layer is built by a first call if needed.
    """
    if not layer.built:
        layer(*inputs, **call_kwargs)
    # Variables, not weights: seed-generator states are non-trainable variables too.
    trainable = layer.trainable_variables
    non_trainable = layer.non_trainable_variables
    n_in = len(inputs)

    if backend_name() == "jax":

        def fn(*args):
            values, ins = list(args[n_in:]), args[:n_in]
            out, _ = layer.stateless_call(
                values, [v.value for v in non_trainable], *ins, **call_kwargs
            )
            return out

        outputs, pb = vjp(fn, *inputs, *[v.value for v in trainable])
    else:

        def fn(*args):
            return layer(*args[:n_in], **call_kwargs)

        # Reading the variables inside the tape records them as sources.
        import tensorflow as tf

        ins = [ops.convert_to_tensor(i) for i in inputs]
        with tf.GradientTape(persistent=True) as tape:
            for i in ins:
                if _is_float(i):
                    tape.watch(i)
            outputs = layer(*ins, **call_kwargs)

        def pb(cotangent):
            sources = [i if _is_float(i) else None for i in ins]
            grads_in = [
                tape.gradient(outputs, s, output_gradients=cotangent) if s is not None else None
                for s in sources
            ]
            grads_w = tape.gradient(outputs, trainable, output_gradients=cotangent)
            return tuple(grads_in) + tuple(grads_w)

    def pullback(cotangent):
        grads = pb(cotangent)
        return tuple(grads[:n_in]), list(grads[n_in:])

    return outputs, pullback
