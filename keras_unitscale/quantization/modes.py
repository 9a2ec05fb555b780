"""Keras' `model.quantize("int8" | "int4")` on keras_unitscale's models, and how a model
built from its constructor arguments (a backbone, a task) remembers which layers were
quantised.

The layers carry the arithmetic (`keras_unitscale.layers._quantize`). Here: which layers
`quantize` visits (those with kernels: the preprocessor's tokenizers, norms and dropouts are
left alone, where plain Keras would stop at an unbuilt tokenizer), and a record
`{layer path: dtype policy name}` that a backbone's or a task's config carries so that
`from_config` (hence `.keras` files and presets) rebuilds the quantised weights before the
saved values are loaded into them.
"""

import gc
from collections.abc import Callable

import keras

from keras_unitscale.backend import keras_internals
from keras_unitscale._records import layers_outside, record_by_path, recorded_layers

RECORD_KEY = "quantized_layers"


def _has_quantize(layer):
    if type(layer).quantize is keras.layers.Layer.quantize:
        return False
    # A keras_unitscale layer without kernels (a tied LM head) has nothing to quantise.
    specs = getattr(layer, "_kernel_specs", None)
    return specs is None or bool(specs)


def _leaves(model, skip=()):
    return [layer for layer in layers_outside(model, skip)
            if len(list(layer._flatten_layers())) == 1]


def quantize_model(model, mode=None, config=None, filters=None, **kwargs):
    """`keras.Model.quantize` restricted to the layers that have a `quantize` of their own.

    Example:
    >>> import numpy as np
    >>> import keras_unitscale as ku
    >>> backbone = ku.models.LSTMBackbone(vocabulary_size=50, hidden_dim=8)
    >>> quantize_model(backbone, "int8")
    >>> sorted({layer.dtype_policy.name for layer in backbone._flatten_layers()
    ...         if layer.quantization_mode})
    ['int8_from_float32']
    """
    if filters is not None and not isinstance(filters, (str, Callable, list, tuple)):
        raise ValueError(
            "`filters` must be a regex string, a list of regex strings or a callable; "
            f"received {type(filters).__name__}."
        )
    ids = {id(layer) for layer in _leaves(model) if _has_quantize(layer)}

    def wanted(layer):
        return id(layer) in ids and keras_internals.should_quantize_layer(layer, filters)

    keras.Model.quantize(model, mode, config=config, filters=wanted, **kwargs)
    # The layers dropped their float kernels without collecting after each (see
    # `layers._quantize._drop_variable`): free those buffers now, once.
    gc.collect()
    # Compiled decoding functions captured the float variables.
    if getattr(model, "_generate_functions", None):
        model._generate_functions = []


def quantized_layers(model, skip=()):
    """`{path: dtype policy name}` of `model`'s quantised layers (outside `skip`)."""
    return record_by_path(
        model, _leaves(model, skip),
        lambda layer: None if layer.quantization_mode is None else layer.dtype_policy.name,
        "quantisation",
    )


def restore_quantization(model, record, skip=()):
    """Quantises the layers of `model` named in `record` (from `quantized_layers`) to their
    recorded policies; the values are those the caller loads next."""
    if not record:
        return
    for layer, name in recorded_layers(
        model, _leaves(model, skip), record, RECORD_KEY, "dtype policy name"
    ):
        policy = keras.dtype_policies.get(name)
        mode = policy.quantization_mode
        config = None
        if mode == "int4":
            config = keras.quantizers.Int4QuantizationConfig(
                block_size=getattr(policy, "block_size", None)
            )
        layer.quantize(mode, config=config)
    if getattr(model, "_generate_functions", None):
        model._generate_functions = []
