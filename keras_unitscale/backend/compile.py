"""Compiling on each backend: a pure tensor function (`compile_pure`), one that reads and
updates Keras variables (`compile_stateful`), and the options of an exported endpoint.
"""

import keras
from keras import ops

from keras_unitscale.backend._common import backend_name


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
