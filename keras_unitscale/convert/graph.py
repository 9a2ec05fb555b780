"""Reading a Keras functional graph for `unit_scale`: its nodes in order, which tensors each is
computed from, the `Add`s that are residual connections, and the `Dense` layers that end it."""

import keras

from keras_unitscale import layers as ulayers

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


def graph_of(model):
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


def ordered_nodes(graph):
    order = []
    for depth in sorted(graph._nodes_by_depth, reverse=True):
        for node in graph._nodes_by_depth[depth]:
            if node.operation is not None and not node.is_input:
                order.append(node)
    return order


def ancestors_of(nodes):
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


def residuals(nodes, ancestors):
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


def is_dense(layer):
    """A Keras `Dense`, or a `TimeDistributed` one."""
    if type(layer) is keras.layers.TimeDistributed:
        layer = layer.layer
    return type(layer) is keras.layers.Dense


def is_graph(layer):
    """A functional or Sequential model used as a layer (converted recursively)."""
    if not isinstance(layer, keras.Model):
        return False
    graph = getattr(layer, "_functional", None) if isinstance(layer, keras.Sequential) else layer
    return graph is not None and hasattr(graph, "_nodes_by_depth") and bool(
        getattr(graph, "inputs", None))


def readouts(graph, nodes):
    """Ids of the Dense layers (or `TimeDistributed` Dense) whose output reaches a model output
    through pass-through layers, and of the nested models there (whose own last Dense is)."""
    producer = {id(t): node for node in nodes for t in node.outputs}
    readouts = set()
    for output in graph.outputs:
        node = producer.get(id(output))
        while node is not None and isinstance(node.operation, _PASS_THROUGH):
            inputs = node.input_tensors
            node = producer.get(id(inputs[0])) if len(inputs) == 1 else None
        if node is not None and (is_dense(node.operation) or is_graph(node.operation)):
            readouts.add(id(node.operation))
    return readouts
