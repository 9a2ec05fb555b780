"""Swapping a Keras layer for its unit-scaled namesake, with its arguments (wrappers
included), for `unit_scale`; what was swapped, dropped or kept goes into its report."""

import inspect

import keras

from keras_unitscale import layers as ulayers
from keras_unitscale.convert.report import ConversionReport

# Keras layer classes with a unit-scaled namesake here.
SWAPS = {
    keras.layers.Dense: ulayers.Dense,
    keras.layers.Embedding: ulayers.Embedding,
    keras.layers.LSTM: ulayers.LSTM,
    keras.layers.GRU: ulayers.GRU,
    keras.layers.MultiHeadAttention: ulayers.MultiHeadAttention,
    keras.layers.LayerNormalization: ulayers.LayerNormalization,
    keras.layers.Dropout: ulayers.Dropout,
    keras.layers.Activation: ulayers.Activation,
}


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


def swap(layer, readout, report, prefix=""):
    """Our namesake of `layer` with its arguments, or `None` (and a report line) if it cannot."""
    target = SWAPS[type(layer)]
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


def swap_wrapper(layer, readout, report, prefix):
    """A `Bidirectional` or `TimeDistributed` with ours inside, or `None` if the wrapped layer
    has no equivalent (the caller keeps the wrapper as it was)."""
    name = prefix + layer.name
    config = layer.get_config()
    if type(layer) is keras.layers.Bidirectional:
        inner = [layer.forward_layer, layer.backward_layer]
    else:
        inner = [layer.layer]
    if any(type(i) not in SWAPS for i in inner):
        return None
    scratch = ConversionReport()
    new_inner = [swap(i, readout, scratch) for i in inner]
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


def keep(layer, report, reason, prefix=""):
    report.kept.append((prefix + layer.name, type(layer).__name__, reason))
