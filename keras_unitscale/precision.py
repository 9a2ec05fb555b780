"""Switch a model's matmuls to simulated FP8, and back.

Every keras-unitscale layer that multiplies matrices has an `fp8` attribute (None by default)
that it passes to `keras_unitscale.ops.linear` / `readout` / `matmul`. `simulate_fp8` puts an
`FP8Simulation` there on every such sublayer, except the ones named in `keep`: u-muP keeps a
few "critical" matmuls (typically the readout, sometimes the first and last layers) in higher
precision. Because unit scaling keeps every tensor near unit scale, plain casting (no
per-tensor scale factors, no loss scaling) is enough.

Call the switch before the first `fit` / `evaluate` / `predict`: a compiled step bakes in
whatever the layers did when it was traced. The switch drops the model's cached step
functions (`train_function`, `test_function`, `predict_function`) so Keras traces new ones on
the next call; a step function of your own (`tf.function`, `jax.jit`) must be re-created. The
setting is not part of the model's config: it is not saved with the model.
"""

from keras_unitscale.ops.formats import FP8Simulation


def _fp8_layers(model):
    layers = model._flatten_layers(include_self=True, recursive=True)
    return [layer for layer in layers if hasattr(layer, "fp8")]


def _reset_step_functions(model):
    # Keras caches the traced step functions; these attributes are what `make_*_function`
    # checks before tracing again.
    for attr in ("train_function", "test_function", "predict_function"):
        if getattr(model, attr, None) is not None:
            setattr(model, attr, None)


def _kept_layers(model, keep):
    if isinstance(keep, str):
        keep = (keep,)
    keep = tuple(keep)
    for name in keep:
        if not isinstance(name, str):
            raise ValueError(f"`keep` must hold layer names (strings); received {name!r}.")
    by_name = {}
    for layer in model._flatten_layers(include_self=True, recursive=True):
        by_name.setdefault(layer.name, []).append(layer)
    missing = [name for name in keep if name not in by_name]
    if missing:
        raise ValueError(
            f"`keep` names layers that are not in model {model.name!r}: {missing}. "
            f"Layers with an FP8 matmul: {[layer.name for layer in _fp8_layers(model)]}."
        )
    kept = set()
    for name in keep:
        for layer in by_name[name]:
            # Keeping a block keeps every matmul inside it.
            kept.update(id(sub) for sub in layer._flatten_layers(include_self=True))
    return kept


def simulate_fp8(model, keep=(), **format_kwargs):
    """Simulates FP8 in every matmul of `model`, except inside the layers named in `keep`.

    Args:
        model: a Keras model (or layer) built from keras-unitscale layers.
        keep: names of layers to leave in the model's own precision (a name may be a block:
            everything inside it is kept).
        **format_kwargs: passed to `FP8Simulation`: `forward_format` (default `"e4m3"`),
            `gradient_format` (`"e5m2"`), `rounding` (`"nearest"`), `overflow`
            (`"saturate"`), `seed`.

    Returns:
        `model`, switched in place.

    Raises:
        ValueError: if `keep` names a layer the model does not have, or the model has no
            layer with an FP8-capable matmul.

    Example:
    >>> import keras
    >>> import numpy as np
    >>> import keras_unitscale as ku
    >>> from keras_unitscale.precision import simulate_fp8
    >>> inputs = keras.Input((16,))
    >>> h = ku.layers.Dense(32, name="hidden")(inputs)
    >>> outputs = ku.layers.Dense(4, readout=True, name="head")(h)
    >>> model = simulate_fp8(keras.Model(inputs, outputs), keep=("head",))
    >>> model.get_layer("hidden").fp8.forward_format, model.get_layer("head").fp8
    ('e4m3', None)
    """
    layers = _fp8_layers(model)
    if not layers:
        raise ValueError(
            f"Model {model.name!r} has no layer with an FP8-capable matmul (an `fp8` "
            "attribute); use keras_unitscale.layers (Dense, attention, ...) to build it."
        )
    template = FP8Simulation(**format_kwargs).get_config()
    kept = _kept_layers(model, keep)
    for i, layer in enumerate(layers):
        _set(layer, None)
        if id(layer) not in kept:
            # One simulation per layer, so each layer draws its own rounding noise.
            seed = None if template["seed"] is None else template["seed"] + i
            _set(layer, FP8Simulation.from_config(dict(template, seed=seed)))
    _reset_step_functions(model)
    return model


def _set(layer, simulation):
    old = getattr(layer, "fp8", None)
    generators = getattr(layer, "_seed_generators", None)
    if generators is not None:
        # Stochastic rounding draws from the simulation's SeedGenerator. The layer must track
        # it (as Keras' own random layers do) so a compiled JAX step carries its state; it is
        # state, not a weight, so saved weights are unchanged.
        if getattr(old, "seed_generator", None) is not None:
            for j in reversed(range(len(generators))):
                if generators[j] is old.seed_generator:
                    del generators[j]
        if getattr(simulation, "seed_generator", None) is not None:
            generators.append(simulation.seed_generator)
    layer.fp8 = simulation


def disable_fp8(model):
    """Turns FP8 simulation off in every layer of `model`; returns `model`.

    Example:
    >>> import keras
    >>> import keras_unitscale as ku
    >>> from keras_unitscale.precision import disable_fp8, simulate_fp8
    >>> model = keras.Sequential([keras.Input((8,)), ku.layers.Dense(4)])
    >>> disable_fp8(simulate_fp8(model)).layers[0].fp8 is None
    True
    """
    for layer in _fp8_layers(model):
        _set(layer, None)
    _reset_step_functions(model)
    return model


def fp8_status(model):
    """Maps the name of every FP8-capable layer of `model` to its simulation (or None).

    Example:
    >>> import keras
    >>> import keras_unitscale as ku
    >>> from keras_unitscale.precision import fp8_status
    >>> model = keras.Sequential([keras.Input((8,)), ku.layers.Dense(4, name="d")])
    >>> fp8_status(model)
    {'d': None}
    """
    return {layer.name: layer.fp8 for layer in _fp8_layers(model)}
