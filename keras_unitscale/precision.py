"""Switch a model's matmuls to FP8 (native or simulated), and back.

Every keras-unitscale layer that multiplies matrices has an `fp8` attribute (None by default)
that it passes to `keras_unitscale.ops.linear` / `readout` / `matmul`. `enable_fp8` puts an FP8
setting there on every such sublayer, except the ones it keeps in the compute dtype:

- `mode="native"`: an `FP8Native` (`keras_unitscale.ops.fp8_native`): every product takes
  real `float8_e4m3fn` operands (weights and activations), its backward products take the
  output gradient in `float8_e5m2`, all accumulated in float32, the result in the compute
  dtype. On JAX with an FP8 GPU (compute capability >= 8.9: Ada, Hopper) XLA runs these dots as
  cuBLASLt FP8 GEMMs. Elsewhere `enable_fp8` raises and names the device.
- `mode="simulate"`: an `FP8Simulation` (`keras_unitscale.ops.formats`): the same casts,
  computed in float32 on any backend and device; it shows the accuracy, not the speed.

Because unit scaling keeps every tensor near unit scale, plain casting (no per-tensor scale
factors, no amax history, no loss scaling) is enough. u-muP keeps a few "critical" matmuls in
higher precision: by default the readout (`Dense(readout=True)`); with `keep_critical=True`
also each attention output projection and each MLP down-projection.

The setting is saved with the model. Each switched layer's config holds an `"fp8"` entry
(present only when set), as Keras' own `quantize("float8")` records itself in a layer's dtype
policy; and the config of a `UnitScaledModel`, a backbone or a task records every layer's
setting by path (`"fp8_layers"`, see `fp8_record`), as KerasHub records quantised layers,
because a block (`MLP`, a transformer block) rebuilds its sublayers from its own arguments. So
a `.keras` file and a preset keep it; a plain `keras.Model` keeps the settings of its own
layers only, not of layers nested in blocks. A model saved with native FP8 and loaded on a machine without FP8
hardware still loads and runs: its matmuls fall back to the simulation, after one warning.
Loading must not fail there (serving, evaluation and export run on CPUs), and the simulation
computes the trained model's arithmetic to within float32 rounding. `disable_fp8` returns a
model to its compute dtype (e.g. before exporting it to serve in normal precision).

Call the switch before the first `fit` / `evaluate` / `predict`: a compiled step bakes in
whatever the layers did when it was traced. The switch drops the model's cached step
functions (`train_function`, `test_function`, `predict_function`) so Keras traces new ones on
the next call; a step function of your own (`tf.function`, `jax.jit`) must be re-created.
"""

from keras_unitscale._records import layers_outside, record_by_path, recorded_layers
from keras_unitscale.ops.formats import FP8Simulation, attach_fp8, fp8_from_config, fp8_to_config
from keras_unitscale.ops.fp8_native import FP8Native, fp8_hardware, require_fp8_hardware

MODES = ("native", "simulate")
__all__ = [
    "MODES", "RECORD_KEY", "disable_fp8", "enable_fp8", "fp8_hardware", "fp8_record", "fp8_status",
    "restore_fp8", "simulate_fp8",
]


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


def _readout_layers(model):
    layers = model._flatten_layers(include_self=True, recursive=True)
    return [layer.name for layer in layers if getattr(layer, "readout", False) is True]


def _critical(model):
    """Names of u-muP's critical FFN down-projections; the attention layers (whose output
    projection is critical) are returned apart, as their other projections stay in FP8."""
    down, attention = [], []
    for layer in model._flatten_layers(include_self=True, recursive=True):
        sub = getattr(layer, "down", None)
        if sub is not None and hasattr(sub, "fp8"):
            down.append(id(sub))
        if hasattr(layer, "fp8") and hasattr(layer, "num_heads") and hasattr(layer, "key_dim"):
            attention.append(id(layer))
    return set(down), set(attention)


def enable_fp8(model, mode="native", keep=None, keep_critical=False, **kwargs):
    """Runs every matmul of `model` in FP8, natively or simulated, except the kept ones.

    Args:
        model: a Keras model (or layer) built from keras-unitscale layers.
        mode: `"native"` (real FP8 dots; needs JAX and an FP8 GPU, see
            `keras_unitscale.ops.fp8_native.fp8_hardware`) or `"simulate"` (the same casts
            computed in float32, anywhere).
        keep: names of layers to leave in the compute dtype (a name may be a block:
            everything inside it is kept). None (the default) keeps the readout layers
            (`Dense(readout=True)`); `()` keeps nothing.
        keep_critical: also keep u-muP's critical matmuls: every attention output projection
            and every MLP down-projection (`MLP.down`).
        **kwargs: with `"simulate"`, passed to `FP8Simulation` (`forward_format`,
            `gradient_format`, `rounding`, `overflow`, `seed`); with `"native"`, only
            `overflow` (`"saturate"`, the default, or `"inf_nan"`).

    Returns:
        `model`, switched in place.

    Raises:
        ValueError: for an unknown `mode`, a `keep` name the model lacks, format arguments
            the mode does not take, or a model without FP8-capable layers.
        RuntimeError: `mode="native"` where there is no FP8 hardware (a CPU, a GPU older than
            compute capability 8.9, the TensorFlow backend); the message names the device.

    Example:
    >>> import keras
    >>> import keras_unitscale as ku
    >>> from keras_unitscale.precision import enable_fp8, fp8_status
    >>> inputs = keras.Input((16,))
    >>> h = ku.layers.Dense(32, name="hidden")(inputs)
    >>> outputs = ku.layers.Dense(4, readout=True, name="head")(h)
    >>> model = enable_fp8(keras.Model(inputs, outputs), mode="simulate")
    >>> {name: type(setting).__name__ for name, setting in fp8_status(model).items()}
    {'hidden': 'FP8Simulation', 'head': 'NoneType'}
    """
    if mode not in MODES:
        raise ValueError(f"`mode` must be one of {MODES}; received {mode!r}.")
    layers = _fp8_layers(model)
    if not layers:
        raise ValueError(
            f"Model {model.name!r} has no layer with an FP8-capable matmul (an `fp8` "
            "attribute); use keras_unitscale.layers (Dense, attention, ...) to build it."
        )
    if mode == "native":
        extra = sorted(set(kwargs) - {"overflow"})
        if extra:
            raise ValueError(
                f'`mode="native"` takes only `overflow` (E4M3 operands, E5M2 gradients, round '
                f'to nearest are fixed); received {extra}. Use mode="simulate" for other formats.'
            )
        template = FP8Native(**kwargs).get_config()
        require_fp8_hardware()
    else:
        template = FP8Simulation(**kwargs).get_config()
    if not isinstance(keep_critical, bool):
        raise ValueError(f"`keep_critical` must be True or False; received {keep_critical!r}.")
    kept = _kept_layers(model, _readout_layers(model) if keep is None else keep)
    down, attention = _critical(model) if keep_critical else (set(), set())
    kept |= down
    for i, layer in enumerate(layers):
        attach_fp8(layer, None)
        if id(layer) in kept:
            continue
        config = dict(template)
        if id(layer) in attention:
            config["keep_matmuls"] = ("attention_output",)
        if mode == "native":
            attach_fp8(layer, FP8Native.from_config(config))
        else:
            # One simulation per layer, so each layer draws its own rounding noise.
            if config["seed"] is not None:
                config["seed"] += i
            attach_fp8(layer, FP8Simulation.from_config(config))
    _reset_step_functions(model)
    return model


def simulate_fp8(model, keep=(), **format_kwargs):
    """Simulates FP8 in every matmul of `model`, except inside the layers named in `keep`.

    The same as `enable_fp8(model, mode="simulate", keep=keep, **format_kwargs)`, except that
    `keep` defaults to nothing.

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
    return enable_fp8(model, mode="simulate", keep=keep, **format_kwargs)


def disable_fp8(model):
    """Turns FP8 (native or simulated) off in every layer of `model`; returns `model`.

    Example:
    >>> import keras
    >>> import keras_unitscale as ku
    >>> from keras_unitscale.precision import disable_fp8, simulate_fp8
    >>> model = keras.Sequential([keras.Input((8,)), ku.layers.Dense(4)])
    >>> disable_fp8(simulate_fp8(model)).layers[0].fp8 is None
    True
    """
    for layer in _fp8_layers(model):
        attach_fp8(layer, None)
    _reset_step_functions(model)
    return model


def fp8_status(model):
    """Maps the name of every FP8-capable layer of `model` to its FP8 setting (or None).

    Example:
    >>> import keras
    >>> import keras_unitscale as ku
    >>> from keras_unitscale.precision import fp8_status
    >>> model = keras.Sequential([keras.Input((8,)), ku.layers.Dense(4, name="d")])
    >>> fp8_status(model)
    {'d': None}
    """
    return {layer.name: layer.fp8 for layer in _fp8_layers(model)}


RECORD_KEY = "fp8_layers"


def _layers_outside(model, skip):
    return [layer for layer in layers_outside(model, skip) if hasattr(layer, "fp8")]


def fp8_record(model, skip=()):
    """`{layer path: serialized FP8 setting}` for the layers of `model` (outside the models in
    `skip`) whose `fp8` is set: what a backbone's or task's config keeps (`"fp8_layers"`), as
    it keeps its quantised layers, since their configs hold constructor arguments rather than
    layer configs.

    Example:
    >>> import keras
    >>> import keras_unitscale as ku
    >>> from keras_unitscale.precision import enable_fp8, fp8_record
    >>> model = keras.Sequential([keras.Input((8,)), ku.layers.Dense(4, name="d")], name="net")
    >>> sorted(fp8_record(enable_fp8(model, mode="simulate", keep=())))
    ['net/d']
    """
    return record_by_path(
        model, _layers_outside(model, skip),
        lambda layer: None if layer.fp8 is None else fp8_to_config(layer.fp8), "FP8 setting",
    )


def restore_fp8(model, record, skip=()):
    """Sets the FP8 settings that `fp8_record` recorded on the layers of `model` (a rebuilt
    backbone or task); native FP8 on a machine without FP8 hardware falls back to the
    simulation when it runs (see the module docstring)."""
    if not record:
        return model
    for layer, config in recorded_layers(
        model, _layers_outside(model, skip), record, RECORD_KEY, "FP8 setting"
    ):
        attach_fp8(layer, fp8_from_config(config))
    _reset_step_functions(model)
    return model
