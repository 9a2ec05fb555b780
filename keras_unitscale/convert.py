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

import dataclasses
import inspect

import keras

from keras_unitscale import layers as ulayers
from keras_unitscale.models.unit_scaled_model import UnitScaledModel
from keras_unitscale.ops.residual import residual_taus

# Keras layer classes with a unit-scaled namesake here.
_SWAPS = {
    keras.layers.Dense: ulayers.Dense,
    keras.layers.Embedding: ulayers.Embedding,
    keras.layers.LSTM: ulayers.LSTM,
    keras.layers.GRU: ulayers.GRU,
    keras.layers.MultiHeadAttention: ulayers.MultiHeadAttention,
    keras.layers.LayerNormalization: ulayers.LayerNormalization,
    keras.layers.Dropout: ulayers.Dropout,
    keras.layers.Activation: ulayers.Activation,
}

# Layers between a Dense and a model output that keep it the last weighted layer.
_PASS_THROUGH = (
    keras.layers.Activation,
    keras.layers.Softmax,
    keras.layers.Dropout,
    keras.layers.Flatten,
    keras.layers.Reshape,
    ulayers.Activation,
    ulayers.Dropout,
)


@dataclasses.dataclass
class ConversionReport:
    """What `unit_scale` did to each layer of a model.

    Attributes:
        swapped: `(name, keras_class, unit_scaled_class)` for each replaced layer.
        residuals: `(add_layer_name, tau)` for each `Add` that became a residual connection.
        readouts: names of the `Dense` layers made readouts.
        dropped_arguments: `{name: [argument, ...]}`: arguments not carried over (the
            initializers, which unit scaling replaces by N(0, 1)).
        kept: `(name, class, reason)` for each layer kept as it was (config and weights).
        notes: `{name: note}`: what a swapped layer's kept arguments mean for its scale
            (a `Bidirectional` that sums or averages its two unit outputs, say).

    Layers inside a nested model are named `outer_model_layer/inner_layer`.
    """

    swapped: list = dataclasses.field(default_factory=list)
    residuals: list = dataclasses.field(default_factory=list)
    readouts: list = dataclasses.field(default_factory=list)
    dropped_arguments: dict = dataclasses.field(default_factory=dict)
    kept: list = dataclasses.field(default_factory=list)
    notes: dict = dataclasses.field(default_factory=dict)

    def __str__(self):
        lines = [f"unit_scale: {len(self.swapped)} layers swapped, "
                 f"{len(self.residuals)} residual connections, {len(self.kept)} kept"]
        for name, old, new in self.swapped:
            extra = " (readout)" if name in self.readouts else ""
            dropped = self.dropped_arguments.get(name)
            if dropped:
                extra += f"; dropped {', '.join(dropped)}"
            if name in self.notes:
                extra += f"; {self.notes[name]}"
            lines.append(f"  swapped  {name}: {old} -> {new}{extra}")
        for name, tau in self.residuals:
            lines.append(f"  residual {name}: tau={tau:.4g}")
        for name, cls, reason in self.kept:
            lines.append(f"  kept     {name} ({cls}): {reason}")
        return "\n".join(lines)


def _graph_of(model):
    """The functional graph of `model`, or a clear error."""
    if not isinstance(model, keras.Model):
        raise ValueError(f"`model` must be a keras.Model; received {type(model).__name__}.")
    graph = model
    if isinstance(model, keras.Sequential):
        graph = getattr(model, "_functional", None)
        if graph is None:
            raise ValueError(
                "`model` is a Sequential model without a known input shape: start it with "
                "`keras.Input(shape)` (or call `model.build(input_shape)`) before `unit_scale`."
            )
    if not hasattr(graph, "_nodes_by_depth") or not getattr(graph, "inputs", None):
        raise ValueError(
            f"`model` must be a functional or Sequential model; {type(model).__name__} is "
            "subclassed, and its `call` is Python that cannot be rewritten. Build it from "
            "`keras_unitscale.layers` instead (docs/migrating.md)."
        )
    return graph


def _ordered_nodes(graph):
    order = []
    for depth in sorted(graph._nodes_by_depth, reverse=True):
        for node in graph._nodes_by_depth[depth]:
            if node.operation is not None and not node.is_input:
                order.append(node)
    return order


def _ancestors(nodes):
    """`{id(tensor): set of ids of the tensors it is computed from, itself included}`."""
    ancestors = {}

    def of(tensor):
        return ancestors.get(id(tensor), {id(tensor)})

    for node in nodes:
        inherited = set()
        for tensor in node.input_tensors:
            inherited |= of(tensor)
        for tensor in node.outputs:
            ancestors[id(tensor)] = inherited | {id(tensor)}
    return ancestors


def _residuals(nodes, ancestors):
    """`{id(add_node): (skip_tensor, branch_tensor)}` for each `Add` of `x` and `f(x)`."""
    found = {}
    for node in nodes:
        if type(node.operation) is not keras.layers.Add or len(node.input_tensors) != 2:
            continue
        first, second = node.input_tensors
        if id(first) in ancestors.get(id(second), ()):
            found[id(node)] = (first, second)
        elif id(second) in ancestors.get(id(first), ()):
            found[id(node)] = (second, first)
    return found


def _is_dense(layer):
    """A Keras `Dense`, or a `TimeDistributed` one."""
    if type(layer) is keras.layers.TimeDistributed:
        layer = layer.layer
    return type(layer) is keras.layers.Dense


def _is_graph(layer):
    """A functional or Sequential model used as a layer (converted recursively)."""
    if not isinstance(layer, keras.Model):
        return False
    graph = getattr(layer, "_functional", None) if isinstance(layer, keras.Sequential) else layer
    return graph is not None and hasattr(graph, "_nodes_by_depth") and bool(
        getattr(graph, "inputs", None))


def _readouts(graph, nodes):
    """Ids of the Dense layers (or `TimeDistributed` Dense) whose output reaches a model output
    through pass-through layers, and of the nested models there (whose own last Dense is)."""
    producer = {id(t): node for node in nodes for t in node.outputs}
    readouts = set()
    for output in graph.outputs:
        node = producer.get(id(output))
        while node is not None and isinstance(node.operation, _PASS_THROUGH):
            inputs = node.input_tensors
            node = producer.get(id(inputs[0])) if len(inputs) == 1 else None
        if node is not None and (_is_dense(node.operation) or _is_graph(node.operation)):
            readouts.add(id(node.operation))
    return readouts


def _construct(target, config):
    """`target.from_config(config)`; arguments that Keras added with a neutral default
    (`quantization_config=None`, `lora_rank=None`, `use_gate=False`, ...) and that `target`
    does not take are dropped on a second try. Our layers raise a `ValueError` that says why
    for any argument they cannot honour."""
    try:
        return target.from_config(config)
    except (ValueError, TypeError) as error:
        message = str(error)
        if "Unrecognized keyword arguments" not in message:
            raise error
        accepted = inspect.signature(target.__init__).parameters
        neutral = [k for k, v in config.items()
                   if k not in accepted and v in (None, False) and repr(k) in message]
        if not neutral:
            raise error
        return target.from_config({k: v for k, v in config.items() if k not in neutral})


def _swap(layer, readout, report, prefix=""):
    """Our namesake of `layer` with its arguments, or `None` (and a report line) if it cannot."""
    target = _SWAPS[type(layer)]
    config = layer.get_config()
    dropped = [key for key in config if key.endswith("_initializer")]
    config = {k: v for k, v in config.items() if k not in dropped}
    if readout:
        config["readout"] = True
    try:
        new = _construct(target, config)
    except (ValueError, TypeError) as error:
        reason = " ".join(str(error).split("Exception encountered:")[-1].split())
        report.kept.append((prefix + layer.name, type(layer).__name__, reason))
        return None
    if dropped:
        report.dropped_arguments[prefix + layer.name] = dropped
    report.swapped.append((prefix + layer.name, type(layer).__name__,
                           f"keras_unitscale.layers.{target.__name__}"))
    if readout:
        report.readouts.append(prefix + layer.name)
    return new


def _swap_wrapper(layer, readout, report, prefix):
    """A `Bidirectional` or `TimeDistributed` with ours inside, or `None` if the wrapped layer
    has no equivalent (the caller keeps the wrapper as it was)."""
    name = prefix + layer.name
    config = layer.get_config()
    if type(layer) is keras.layers.Bidirectional:
        inner = [layer.forward_layer, layer.backward_layer]
    else:
        inner = [layer.layer]
    if any(type(i) not in _SWAPS for i in inner):
        return None
    scratch = ConversionReport()
    new_inner = [_swap(i, readout, scratch) for i in inner]
    if any(i is None for i in new_inner):
        reason = "; ".join(r for _, _, r in scratch.kept)
        report.kept.append((name, type(layer).__name__, f"its {inner[0].name}: {reason}"))
        return NotImplemented
    wrapped = "/".join(f"keras_unitscale.layers.{type(i).__name__}" for i in new_inner)
    report.swapped.append((name, f"{type(layer).__name__}({type(inner[0]).__name__})",
                           f"{type(layer).__name__}({wrapped})"))
    dropped = sorted({a for args in scratch.dropped_arguments.values() for a in args})
    if dropped:
        report.dropped_arguments[name] = dropped
    if readout and scratch.readouts:
        report.readouts.append(name)
    if type(layer) is keras.layers.TimeDistributed:
        return keras.layers.TimeDistributed(new_inner[0], name=layer.name)
    merge_mode = config["merge_mode"]
    if merge_mode in ("sum", "ave"):
        report.notes[name] = (
            f"merge_mode={merge_mode!r} kept: the two unit outputs "
            f"{'add up to std sqrt(2)' if merge_mode == 'sum' else 'average to std 1/sqrt(2)'}"
            " ('concat' keeps unit scale)"
        )
    return keras.layers.Bidirectional(
        new_inner[0], merge_mode=merge_mode, backward_layer=new_inner[1], name=layer.name
    )


def _keep(layer, report, reason, prefix=""):
    report.kept.append((prefix + layer.name, type(layer).__name__, reason))


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
    graph = _graph_of(model)
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
    nodes = _ordered_nodes(graph)
    ancestors = _ancestors(nodes)
    residuals = _residuals(nodes, ancestors)
    readouts = _readouts(graph, nodes) if readouts_allowed else set()
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
            if type(layer) in _SWAPS:
                new = _swap(layer, readout, report, prefix)
            elif type(layer) in (keras.layers.Bidirectional, keras.layers.TimeDistributed):
                new = _swap_wrapper(layer, readout, report, prefix)
            elif _is_graph(layer):
                inner = _graph_of(layer)
                inner_inputs, inner_outputs = _convert(
                    inner, residual_tau, report, f"{prefix}{layer.name}/", readout
                )
                new = keras.Model(inner_inputs, inner_outputs, name=layer.name)
            if new is None or new is NotImplemented:  # kept: a copy, weights copied below
                if type(layer) is keras.layers.Add:
                    _keep(layer, report, "an addition of two separate paths, not a residual",
                          prefix)
                elif new is None and type(layer) not in _SWAPS:
                    _keep(layer, report, "no unit-scaled equivalent", prefix)
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
