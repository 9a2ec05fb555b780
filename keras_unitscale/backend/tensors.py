"""What a tensor or the distribution holds that `keras.ops` does not say: a tensor's concrete
value (or that it is traced), its Keras mask, and how many replicas share a batch.
"""

import keras

from keras_unitscale.backend._common import backend_name


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
