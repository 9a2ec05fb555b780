"""Training on several devices with Keras' distribution API: meshes, layouts, shortcuts.

`keras.distribution` runs on the JAX backend: one program is traced over global shapes and
XLA partitions it, so every scale computed from a shape (weight-gradient scales, the
embedding's token count, the loss's count) sees the global batch with no help. On TensorFlow
use `tf.distribute` (`MirroredStrategy`, `MultiWorkerMirroredStrategy`); there each replica
traces its own share of the batch and `keras_unitscale.backend.num_replicas_in_sync` scales
the counts back up. See docs/distributed.md.

Helpers here:
- `data_parallel(devices)`: replicate the model, split each batch over the devices.
- `device_mesh(model_parallelism, devices)`: a 2-D `(batch, model)` mesh.
- `layout_map(mesh)`: a `keras.distribution.LayoutMap` that shards the large matrices of our
  transformer layers (attention projections, MLP, token embedding, LM head) Megatron-style
  over the mesh's model axis.
- `model_parallel(model_parallelism, devices)`: the two above, as a `ModelParallel`.

Usage (JAX backend):

    import keras
    from keras_unitscale import distribution

    keras.distribution.set_distribution(distribution.model_parallel(model_parallelism=2))
    model = ...      # build and compile after setting the distribution
    model.fit(...)   # each batch is split over the mesh's "batch" axis
"""

import keras

from keras_unitscale.layers._validation import positive_int

_PREFIX = r"(?:.*/)?"  # any enclosing layers: the path of a variable is "outer/inner/name"


def _devices(devices):
    devices = keras.distribution.list_devices() if devices is None else list(devices)
    if not devices:
        raise ValueError("`devices` must name at least one device; received an empty list.")
    return devices


def data_parallel(devices=None):
    """A `keras.distribution.DataParallel` over `devices` (default: all of this host's).

    Every device holds the whole model; each batch passed to `fit` (the global batch) is
    split along its first axis. Set it with `keras.distribution.set_distribution(...)` or
    use its `scope()` before building the model.

    Example:
    >>> import keras
    >>> from keras_unitscale import distribution
    >>> dist = distribution.data_parallel(keras.distribution.list_devices()[:1])
    >>> dist.device_mesh.shape, dist.batch_dim_name
    ((1,), 'batch')
    """
    return keras.distribution.DataParallel(devices=_devices(devices))


def device_mesh(model_parallelism=1, devices=None, data_dim="batch", model_dim="model"):
    """A 2-D `keras.distribution.DeviceMesh` of shape `(len(devices) // m, m)`.

    Args:
        model_parallelism: `m`, how many devices share one copy of the model (the size of
            the model axis). Must divide the number of devices.
        devices: device names (default: `keras.distribution.list_devices()`).
        data_dim, model_dim: names of the two axes.

    Example:
    >>> import keras
    >>> from keras_unitscale import distribution
    >>> mesh = distribution.device_mesh(1, keras.distribution.list_devices()[:1])
    >>> mesh.shape, mesh.axis_names
    ((1, 1), ('batch', 'model'))
    """
    devices = _devices(devices)
    model_parallelism = positive_int(model_parallelism, "model_parallelism")
    if len(devices) % model_parallelism:
        raise ValueError(
            f"`model_parallelism` must divide the number of devices ({len(devices)}); "
            f"received {model_parallelism}."
        )
    if data_dim == model_dim:
        raise ValueError(f"`data_dim` and `model_dim` must differ; both are {data_dim!r}.")
    shape = (len(devices) // model_parallelism, model_parallelism)
    return keras.distribution.DeviceMesh(shape, (data_dim, model_dim), devices)


def layout_map(device_mesh, model_dim="model", data_dim=None, shard_vocabulary=True):
    """A `keras.distribution.LayoutMap` that shards our transformer layers' large matrices.

    Megatron's tensor-parallel split over the mesh axis `model_dim`: the query, key and
    value projections by output columns (whole heads per device when `num_heads` is a
    multiple of the axis size) and the attention output projection by input rows; the MLP's
    `up`/`gate` by columns and `down` by rows; the token embedding and the LM head by
    vocabulary entries. Keys are regular expressions over variable paths, matching the
    weights of `MultiHeadAttention` (`.../query_kernel`, `.../attention_output_kernel`, ...),
    of an `MLP` named `mlp` or `mlp_<n>` (as in our transformer blocks), of an `Embedding`
    named `embedding[_<n>]` or `token_embedding` (as in our backbones) and of an `LMHead`
    named `lm_head`. Everything else (norms, position embeddings, LSTMs, small heads) is
    replicated. A sharded axis must be divisible by the size of its mesh axis (JAX
    requires it): `num_heads * key_dim`, `intermediate_dim` and, with `shard_vocabulary`,
    the vocabulary size.

    Layouts change where weights live, never a shape the program sees, so no scale changes.

    Args:
        device_mesh: a `keras.distribution.DeviceMesh`, e.g. from `device_mesh()`.
        model_dim: the mesh axis that splits the matrices.
        data_dim: optionally, the mesh axis of the batch: then each matrix's other axis is
            split over it too (fully sharded, as FSDP / ZeRO-3), and every device keeps only
            `1 / num_devices` of these weights.
        shard_vocabulary: split the token embedding and LM head (the vocabulary size must
            be divisible by the model axis); false keeps them replicated.

    Example:
    >>> import keras
    >>> from keras_unitscale import distribution
    >>> mesh = distribution.device_mesh(1, keras.distribution.list_devices()[:1])
    >>> layouts = distribution.layout_map(mesh)
    >>> layouts["transformer_layer_0/self_attention/query_kernel"].axes
    (None, 'model')
    >>> layouts["transformer_layer_0/mlp/down/kernel"].axes
    ('model', None)
    >>> layouts["embeddings/position_embedding/embeddings"] is None
    True
    """
    names = tuple(device_mesh.axis_names)
    if model_dim not in names:
        raise ValueError(
            f"`model_dim` must be an axis of the mesh {names}; received {model_dim!r}."
        )
    if data_dim is not None and (data_dim not in names or data_dim == model_dim):
        raise ValueError(
            f"`data_dim` must be None or another axis of the mesh {names}; received "
            f"{data_dim!r}."
        )
    m, d = model_dim, data_dim
    layouts = keras.distribution.LayoutMap(device_mesh)
    # MultiHeadAttention: [width, heads * head_dim] projections in, [heads * v, width] out.
    layouts[_PREFIX + r"(?:query|key|value)_kernel"] = (d, m)
    layouts[_PREFIX + r"(?:query|key|value)_bias"] = (m,)
    layouts[_PREFIX + r"attention_output_kernel"] = (m, d)
    # MLP: [width, hidden] in (plain and gate), [hidden, width] out.
    layouts[_PREFIX + r"mlp(?:_\d+)?/(?:up|gate)/kernel"] = (d, m)
    layouts[_PREFIX + r"mlp(?:_\d+)?/(?:up|gate)/bias"] = (m,)
    layouts[_PREFIX + r"mlp(?:_\d+)?/down/kernel"] = (m, d)
    if shard_vocabulary:
        # [vocab, width] table and [width, vocab] readout: the largest matrices of small LMs.
        layouts[_PREFIX + r"(?:token_)?embedding(?:_\d+)?/embeddings"] = (m, d)
        layouts[_PREFIX + r"lm_head/kernel"] = (d, m)
    return layouts


def model_parallel(model_parallelism, devices=None, fully_sharded=False, shard_vocabulary=True):
    """A `keras.distribution.ModelParallel` on a `(batch, model)` mesh with `layout_map`.

    Batches are split over the `"batch"` axis (`len(devices) // model_parallelism` model
    replicas), the large matrices over the `"model"` axis.

    Args:
        model_parallelism: devices per model replica (the size of the model axis).
        devices: device names (default: all of this host's).
        fully_sharded: also split the matrices over the batch axis (see `layout_map`).
        shard_vocabulary: see `layout_map`.

    Example:
    >>> import keras
    >>> from keras_unitscale import distribution
    >>> dist = distribution.model_parallel(1, keras.distribution.list_devices()[:1])
    >>> dist.device_mesh.shape, dist.batch_dim_name
    ((1, 1), 'batch')
    """
    mesh = device_mesh(model_parallelism, devices)
    layouts = layout_map(
        mesh,
        model_dim="model",
        data_dim="batch" if fully_sharded else None,
        shard_vocabulary=shard_vocabulary,
    )
    return keras.distribution.ModelParallel(layout_map=layouts, batch_dim_name="batch")
