"""`unit_scale(model)`: the unit-scaled equivalent of a functional or Sequential Keras model.

Graphcore's `unit_scaling.transforms.unit_scale` converts a PyTorch module by tracing it; this
is the same idea for a Keras graph, which a functional model already is. The graph is walked
in order and rebuilt:

- each layer of a kind this library has (`Dense`, `Embedding`, `LSTM`, `GRU`,
  `MultiHeadAttention`, `LayerNormalization`, `Dropout`, `Activation`) is replaced by ours,
  with its arguments; its initializers are dropped, since unit scaling draws weights N(0, 1)
  (`glorot_uniform` would start the layer at a tenth of unit scale);
- each `keras.layers.Add` of two tensors where one is computed from the other (`x + f(x)`) is
  a residual connection: it becomes a `ResidualSplit`/`ResidualAdd` pair, with u-muP's taus
  (`residual_taus`: every residual branch makes up an equal share of the final stream);
- each `Dense` whose output reaches a model output through shape-only or activation layers
  is made a readout (`Dense(..., readout=True)`, u-muP's `1 / fan_in` rule);
- wrappers keep their wrapping: a `Bidirectional` LSTM/GRU gets ours in both directions (its
  `merge_mode` kept), a `TimeDistributed` layer gets ours inside; a functional or Sequential
  model used as a layer is converted the same way, recursively (its residual taus are its
  own equal shares; its last `Dense` is a readout only if nothing but pass-through layers
  follows it in the outer model);
- every other layer (pooling, `Flatten`, `Conv1D`, ...) is kept as it was: a copy with the
  same config and weights, listed in the report with the reason.

The swapped layers start from fresh unit-scale weights: the converted model is a new model
to train, not the same function. It is a `UnitScaledModel`, so `compile()` brings u-muP's
optimizer, and it saves and loads as any other model.
"""

import keras

from keras_unitscale import layers as ulayers
from keras_unitscale.convert import graph as graph_lib
from keras_unitscale.convert import swaps
from keras_unitscale.convert.report import ConversionReport
from keras_unitscale.models.unit_scaled_model import UnitScaledModel
from keras_unitscale.ops.residual import residual_taus

__all__ = ["ConversionReport", "unit_scale"]


def unit_scale(model, residual_tau=None, return_report=False, verbose=False):
    """The unit-scaled equivalent of a functional or Sequential Keras model.

    Layers with a unit-scaled namesake are swapped (arguments kept, initializers dropped),
    `x + f(x)` additions become unit-scaled residual connections, the last `Dense` before each
    output becomes a readout, and every other layer is kept as it was; see the module
    docstring. The original model is not changed.

    Args:
        model: a functional or Sequential `keras.Model` with known input shapes.
        residual_tau: the branch weight of every residual connection (a non-negative number),
            or `None` (default) for u-muP's equal shares: the `l`-th residual in graph order
            gets `tau = sqrt(1 / l)`, so every branch makes up the same part of the output.
        return_report: also return a `ConversionReport` of what was swapped and kept.
        verbose: print the report.

    Returns:
        A `keras_unitscale.models.UnitScaledModel`, or `(model, report)`.

    Example:
    >>> import keras
    >>> import keras_unitscale as ku
    >>> inputs = keras.Input((8,), dtype="int32")
    >>> x = keras.layers.Embedding(100, 32, mask_zero=True)(inputs)
    >>> x = keras.layers.Add()([x, keras.layers.Dense(32, activation="relu")(x)])
    >>> x = keras.layers.GlobalAveragePooling1D()(x)
    >>> outputs = keras.layers.Dense(2, activation="softmax", name="classify")(x)
    >>> converted, report = ku.unit_scale(keras.Model(inputs, outputs), return_report=True)
    >>> [old for _, old, _ in report.swapped]
    ['Embedding', 'Dense', 'Dense']
    >>> report.readouts, [cls for _, cls, _ in report.kept]
    (['classify'], ['GlobalAveragePooling1D'])
    """
    graph = graph_lib.graph_of(model)
    if residual_tau is not None and (
        isinstance(residual_tau, bool) or not isinstance(residual_tau, (int, float))
        or not residual_tau >= 0
    ):
        raise ValueError(
            f"`residual_tau` must be None or a non-negative number; received {residual_tau!r}."
        )
    report = ConversionReport()
    new_inputs, new_outputs = _convert(graph, residual_tau, report, "", True)
    result = UnitScaledModel(new_inputs, new_outputs, name=f"unit_scaled_{model.name}")
    if verbose:
        print(report)
    return (result, report) if return_report else result


def _convert(graph, residual_tau, report, prefix, readouts_allowed):
    """The inputs and outputs of `graph` rebuilt with unit-scaled layers (see `unit_scale`);
    layer names in `report` get `prefix`; its Dense layers become readouts only if
    `readouts_allowed` (a nested model followed by more layers has none)."""
    nodes = graph_lib.ordered_nodes(graph)
    ancestors = graph_lib.ancestors_of(nodes)
    residuals = graph_lib.residuals(nodes, ancestors)
    readouts = graph_lib.readouts(graph, nodes) if readouts_allowed else set()
    taus = (
        residual_taus([1.0] * len(residuals)) if residual_tau is None
        else [float(residual_tau)] * len(residuals)
    )
    tau_of = dict(zip([id(n) for n in nodes if id(n) in residuals], taus))

    # For each residual: the nodes of its branch that read the skip tensor directly.
    branch_reads = {}
    for add_id, (skip, branch) in residuals.items():
        for node in nodes:
            if id(node) == add_id:
                continue
            reads_skip = any(t is skip for t in node.input_tensors)
            on_branch = any(id(t) in ancestors.get(id(branch), ()) for t in node.outputs)
            if reads_skip and on_branch:
                branch_reads.setdefault(id(node), {}).setdefault(id(skip), add_id)

    new_layers, kept = {}, []  # id(layer) -> its replacement; (layer, copy) pairs

    def converted(layer):
        if not isinstance(layer, keras.layers.Layer):
            return layer  # a `keras.ops` operation in the graph: stateless, reused
        if id(layer) not in new_layers:
            readout = id(layer) in readouts
            new = None
            if type(layer) in swaps.SWAPS:
                new = swaps.swap(layer, readout, report, prefix)
            elif type(layer) in (keras.layers.Bidirectional, keras.layers.TimeDistributed):
                new = swaps.swap_wrapper(layer, readout, report, prefix)
            elif graph_lib.is_graph(layer):
                inner = graph_lib.graph_of(layer)
                inner_inputs, inner_outputs = _convert(
                    inner, residual_tau, report, f"{prefix}{layer.name}/", readout
                )
                new = keras.Model(inner_inputs, inner_outputs, name=layer.name)
            if new is None or new is NotImplemented:  # kept: a copy, weights copied below
                if type(layer) is keras.layers.Add:
                    swaps.keep(layer, report,
                               "an addition of two separate paths, not a residual", prefix)
                elif new is None and type(layer) not in swaps.SWAPS:
                    swaps.keep(layer, report, "no unit-scaled equivalent", prefix)
                new = layer.__class__.from_config(layer.get_config())
                kept.append((layer, new))
            new_layers[id(layer)] = new
        return new_layers[id(layer)]

    new_inputs = [
        keras.Input(batch_shape=t.shape, dtype=t.dtype, sparse=t.sparse,
                    name=t._keras_history.operation.name)
        for t in graph.inputs
    ]
    values = {id(old): new for old, new in zip(graph.inputs, new_inputs)}
    splits = {}  # id(add node) -> (residual, skip) outputs of its ResidualSplit

    def split_of(add_id):
        if add_id not in splits:
            skip, _ = residuals[add_id]
            layer = ulayers.ResidualSplit(tau_of[add_id])
            splits[add_id] = layer(values[id(skip)])
        return splits[add_id]

    for node in nodes:
        layer = node.operation
        if id(node) in residuals:
            skip, branch = residuals[id(node)]
            tau = tau_of[id(node)]
            _, skip_value = split_of(id(node))
            values[id(node.outputs[0])] = ulayers.ResidualAdd(tau, name=layer.name)(
                [values[id(branch)], skip_value])
            report.residuals.append((prefix + layer.name, tau))
            continue
        overrides = dict(values)
        for skip_id, add_id in branch_reads.get(id(node), {}).items():
            overrides[skip_id] = split_of(add_id)[0]
        args, kwargs = node.arguments.fill_in(overrides)
        outputs = converted(layer)(*args, **kwargs)
        for old, new in zip(node.outputs, keras.tree.flatten(outputs)):
            values[id(old)] = new

    # Layers kept as they were keep their weights.
    for old, new in kept:
        if old.weights:
            new.set_weights(old.get_weights())

    new_outputs = [values[id(t)] for t in graph.outputs]
    outputs_struct = getattr(graph, "_outputs_struct", None)
    if outputs_struct is not None:
        new_outputs = keras.tree.pack_sequence_as(outputs_struct, new_outputs)
    inputs_struct = getattr(graph, "_inputs_struct", None)
    if inputs_struct is not None:
        new_inputs = keras.tree.pack_sequence_as(inputs_struct, new_inputs)
    return new_inputs, new_outputs
