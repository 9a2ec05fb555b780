"""Per-layer settings recorded by layer path in a backbone's, task's or model's config.

Their configs hold constructor arguments, not layer configs, so a setting made on the layers
after construction (`quantize`, `keras_unitscale.precision.enable_fp8`) is kept as
`{layer path: value}` and put back on the rebuilt model (`"quantized_layers"`,
`"fp8_layers"`). This module holds what the two records share: which layers count, unique
paths, and the checks on a record read back.
"""


def layers_outside(model, skip=()):
    """The layers of `model` (itself included, recursively) not inside the models in `skip`."""
    skipped = {id(layer) for other in skip if other is not None
               for layer in other._flatten_layers()}
    return [layer for layer in model._flatten_layers() if id(layer) not in skipped]


def record_by_path(model, layers, value, what):
    """`{layer.path: value(layer)}` over `layers`, leaving out those where `value` is None.

    Raises:
        ValueError: if a recorded layer's path is empty or not unique in `model`.
    """
    record = {}
    for layer in layers:
        entry = value(layer)
        if entry is None:
            continue
        if not layer.path or layer.path in record:
            raise ValueError(
                f"Cannot record the {what} of layer {layer.name!r}: its path "
                f"{layer.path!r} is not unique in {model.name!r}."
            )
        record[layer.path] = entry
    return record


def recorded_layers(model, layers, record, key, values):
    """`[(layer, recorded value)]` for a `record` read back from a config under `key`.

    Raises:
        ValueError: if `record` is not a dict (of layer path to `values`), or names a path
            that none of `layers` has.
    """
    if not isinstance(record, dict):
        raise ValueError(
            f"`{key}` must be a dict of layer path to {values}; received {record!r:.80}."
        )
    by_path = {layer.path: layer for layer in layers}
    missing = sorted(set(record) - set(by_path))
    if missing:
        raise ValueError(f"`{key}` names layers that {model.name!r} does not have: {missing[:5]}.")
    return [(by_path[path], value) for path, value in record.items()]
