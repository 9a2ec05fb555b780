"""The one module that knows which backend runs.

Everything else in keras-unitscale is written against `keras.ops`. What cannot be, lives here:

- `custom_gradient`: a portable wrapper over `keras.ops.custom_gradient`. TensorFlow hands the
  gradient function one positional upstream per output (and a `variables` keyword when the
  function reads variables); JAX hands it one positional argument, a tuple for several
  outputs. Our gradient functions always receive one upstream argument (a tuple when the
  function has several outputs) and return a tuple with one gradient per input.
- `vjp` and `layer_vjp`: forward values plus a pull-back, for scale analysis and tests.
- `num_replicas_in_sync`: how many replicas a `tf.distribute` strategy splits a batch over.
- `rnn`, `fused_rnn`, `cudnn_disables_jit`: Keras' recurrent loop and the fused LSTM / GRU
  kernels (cuDNN), which `keras.ops` does not expose.
"""

import keras
from keras import ops


def backend_name():
    return keras.backend.backend()


def has_fused_float32_cross_entropy():
    """Whether Keras' float32 sparse cross-entropy runs on a fused kernel of the backend's own
    that is both faster and no larger than ours (TensorFlow's
    `SparseSoftmaxCrossEntropyWithLogits`: CausalLM training on CPU fell to 0.92x KerasHub with
    our op). On JAX, Keras' loss keeps a one-hot and log-probabilities, so ours is used."""
    return backend_name() == "tensorflow"


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


def num_replicas_in_sync():
    """How many replicas share the batch this code sees: the global batch over the local one.

    Inside `strategy.run` of a `tf.distribute` strategy (where `model.fit` computes), each
    replica sees `1 / num_replicas_in_sync` of the batch. Everywhere else the whole batch is
    in view and this is 1: outside a strategy, in its cross-replica context (directly under
    `strategy.scope()`), and on JAX, whose `keras.distribution` traces one program over
    global shapes.
    """
    if backend_name() != "tensorflow":
        return 1
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    return 1 if context is None else context.num_replicas_in_sync


def concrete_value(x):
    """`x` as a NumPy array when it holds concrete values (eager), else `None` (traced)."""
    import numpy as np

    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, keras.KerasTensor):
        return None
    backend = backend_name()
    if backend == "tensorflow":
        import tensorflow as tf

        if tf.executing_eagerly() and hasattr(x, "numpy"):
            return x.numpy()
        return None
    if backend == "jax":
        import jax

        if isinstance(x, jax.core.Tracer):
            return None
    try:
        return np.asarray(x)
    except Exception:  # a traced or symbolic value of another kind
        return None


def get_keras_mask(x):
    """The Keras mask attached to `x`, or `None` (JAX arrays keep it in a side table)."""
    from keras.src.backend import get_keras_mask as _get

    return _get(x)


def set_keras_mask(x, mask):
    """Attaches a Keras mask to `x` in place."""
    from keras.src.backend import set_keras_mask as _set

    _set(x, mask)


def compile_pure(fn, static_argnums=()):
    """Compiles a pure tensor function once per input shape on JAX; `fn` itself elsewhere.

    Eager JAX compiles every primitive separately for each new shape, which makes long
    elementwise chains (the low-precision casts) take seconds per call; one `jax.jit` makes
    them one kernel. Inside a traced function the jit is simply inlined. TensorFlow's eager
    kernels need no such help, and `tf.function` would retrace per Python argument, so `fn` is
    returned unchanged there. `fn` must not touch Keras variables or random state, and the
    arguments at `static_argnums` must be hashable.
    """
    compiled = {}

    def call(*args):
        backend = backend_name()
        if backend != "jax":
            return fn(*args)
        if backend not in compiled:
            import jax

            compiled[backend] = jax.jit(fn, static_argnums=static_argnums)
        return compiled[backend](*args)

    return call


def cudnn_disables_jit(cell="lstm", unroll=False, use_bias=True):
    """Whether TensorFlow would run a fused cuDNN RNN kernel, which XLA cannot compile.

    Keras' own LSTM and GRU then turn `jit_compile` off; ours do the same. Never on JAX.
    """
    if backend_name() != "tensorflow":
        return False
    from keras.src import backend as keras_backend

    reset_after = True if cell == "gru" else None
    return keras_backend.cudnn_ok(
        keras.activations.tanh, keras.activations.sigmoid, unroll, use_bias, reset_after
    )


def rnn(step, inputs, states, **kwargs):
    """Keras' own recurrent loop over `inputs: [batch, time, ...]` (`keras.src.backend.rnn`:
    the backend's while loop or scan), as `keras.layers.RNN` runs it; keyword arguments and
    the result `(last_output, outputs, new_states)` are Keras'."""
    from keras.src import backend as keras_backend

    return keras_backend.rnn(step, inputs, states, **kwargs)


def fused_rnn(cell, inputs, states, mask, kernel, recurrent_kernel, bias, **kwargs):
    """The backend's fused LSTM or GRU kernel (`cell`: `"lstm"` or `"gru"`), with tanh and
    sigmoid and, for the GRU, `reset_after=True`: cuDNN where Keras' LSTM / GRU would use it,
    JAX's scan GRU. Raises `NotImplementedError` where it cannot run (as Keras' does);
    keyword arguments and the result are those of `rnn`."""
    from keras.src import backend as keras_backend

    weights = dict(
        kernel=kernel, recurrent_kernel=recurrent_kernel, bias=bias,
        activation=keras.activations.tanh, recurrent_activation=keras.activations.sigmoid,
    )
    if cell == "lstm":
        return keras_backend.lstm(inputs, states[0], states[1], mask, **weights, **kwargs)
    return keras_backend.gru(inputs, states[0], mask, **weights, reset_after=True, **kwargs)


def export_endpoint_options(polymorphic_shapes, constraints=()):
    """Extra arguments of `keras.export.ExportArchive.add_endpoint` for one endpoint.

    TensorFlow traces the endpoint as a `tf.function` whose `None` dimensions stay dynamic and
    needs none. On JAX, Keras converts it with `jax2tf` (native serialization: one
    `XlaCallModule` op), which must be told which dimensions are symbolic:
    `polymorphic_shapes` is the input signature's structure with one jax2tf shape string per
    input, e.g. `{"token_ids": "(batch, length)", "padding_mask": "(batch, length)"}` (a
    shared name where two inputs share a length), and `constraints` bound the symbols, e.g.
    `("length <= 512",)` for a position table of 512 rows, without which slicing the table
    cannot be shown in bounds. No gradient is exported, and the program is lowered for CPU
    and CUDA, so that a CPU or a GPU TF Serving runs it.

    Example:
    >>> options = export_endpoint_options({"token_ids": "(batch, length)"}, ["length <= 8"])
    >>> list(options) == (["jax2tf_kwargs"] if backend_name() == "jax" else [])
    True
    """
    if backend_name() != "jax":
        return {}
    return {
        "jax2tf_kwargs": {
            "polymorphic_shapes": [polymorphic_shapes],
            "polymorphic_constraints": tuple(constraints),
            # Serving needs no gradient, and saving one would trace the VJP at symbolic shapes.
            "with_gradient": False,
            # StableHLO in one `XlaCallModule`, lowered for both kinds of TF Serving host,
            # whichever device JAX ran on here.
            "native_serialization": True,
            "native_serialization_platforms": ("cpu", "cuda"),
        }
    }


def compile_stateful(fn, updated, read):
    """Compiles `fn(inputs, static=None)`, which reads Keras variables, with XLA.

    `inputs` is a structure of tensors; `static` a hashable Python value (a tuple of stop
    token ids, say) that is compiled in. TensorFlow: `tf.function(jit_compile=True)`. JAX:
    `jax.jit` of a stateless version that takes the variables' values as arguments, under a
    `keras.StatelessScope`; the new values of the `updated` variables (a sampler's seed) are
    assigned back afterwards, the `read` ones (the weights) are only read. Other backends get
    `fn` itself. On JAX the compiled program is at `.jitted` (one per input shape).
    """
    backend = backend_name()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, jit_compile=True)
    if backend != "jax":
        return fn
    import itertools

    import jax

    def stateless(inputs, static, updated_values, read_values):
        mapping = itertools.chain(zip(updated, updated_values), zip(read, read_values))
        with keras.StatelessScope(state_mapping=mapping) as scope:
            outputs = fn(inputs, static)
        new_values = []
        for variable, value in zip(updated, updated_values):
            current = scope.get_current_value(variable)
            new_values.append(value if current is None else current)
        return outputs, new_values

    compiled = jax.jit(stateless, static_argnames=["static"])

    def run(inputs, static=None):
        inputs = keras.tree.map_structure(ops.convert_to_tensor, inputs)
        outputs, values = compiled(
            inputs, static, [v.value for v in updated], [v.value for v in read]
        )
        for variable, value in zip(updated, values):
            variable.assign(value)
        return outputs

    run.jitted = compiled
    return run


def fused_attention(query, key, value, mask, scale, is_causal):
    """`softmax(scale * q k^T) v` through `keras.ops.dot_product_attention`, `[B, T, H, D]`.

    `mask` is `None` or boolean `[batch or 1, heads or 1, T or 1, S]`; `is_causal` is the
    kernel's own causal mask (query `i` sees keys `j <= i`). Where `cudnn_attention_available`,
    cuDNN's flash attention runs: a key padding mask (`[batch, 1, 1, S]`) that keeps a prefix
    of each row's keys, which a run-time check confirms, is given as key lengths; any other
    mask as an additive bias (as Keras' `MultiHeadAttention` does), which the kernel reads
    instead of skipping the masked blocks. Elsewhere it is XLA's attention (on TensorFlow,
    Keras' own).
    """
    if not cudnn_attention_available(query, key):
        return ops.dot_product_attention(
            query, key, value, mask=mask, scale=scale, is_causal=is_causal,
            flash_attention=False,
        )
    import jax

    def attend(implementation, mask=None, lengths=None):
        return jax.nn.dot_product_attention(
            query, key, value, mask=mask, scale=scale, is_causal=is_causal,
            key_value_seq_lengths=lengths, implementation=implementation,
        )

    def masked():
        # cuDNN takes a bias with the full [T, S] extent only (broadcast over batch and heads).
        full = jax.numpy.broadcast_to(
            mask, tuple(mask.shape[:2]) + (query.shape[1], key.shape[1])
        )
        try:
            return attend("cudnn", mask=full)
        except Exception:  # a shape or version cuDNN does not take
            return attend("xla", mask=mask)

    if mask is None:
        try:
            return attend("cudnn")
        except Exception:
            return attend("xla")
    if tuple(mask.shape[1:3]) != (1, 1) or mask.shape[0] != query.shape[0]:
        return masked()
    keep = mask[:, 0, 0, :]
    lengths = jax.numpy.sum(keep, axis=-1, dtype="int32")
    prefix = jax.numpy.arange(keep.shape[-1])[None, :] < lengths[:, None]
    is_prefix = jax.numpy.all((keep == prefix) & (lengths > 0)[:, None])
    try:
        # Both branches are cuDNN's kernel, whose residuals for the backward pass are small:
        # the branch not taken must still produce the other's residuals (as zeros).
        return jax.lax.cond(is_prefix, lambda: attend("cudnn", lengths=lengths), masked)
    except Exception:
        return masked()


def cudnn_attention_available(query, key):
    """Whether `fused_attention` runs cuDNN's flash attention for these inputs: JAX on an
    NVIDIA GPU, static shapes, 16-bit inputs, a head size that is a multiple of 8 up to 128."""
    if backend_name() != "jax":
        return False
    import jax

    if jax.devices()[0].platform != "gpu":
        return False
    dtype = keras.backend.standardize_dtype(query.dtype)
    head_dim = query.shape[-1]
    static = all(isinstance(d, int) for d in tuple(query.shape) + tuple(key.shape))
    return static and dtype in ("bfloat16", "float16") and head_dim % 8 == 0 and head_dim <= 128
