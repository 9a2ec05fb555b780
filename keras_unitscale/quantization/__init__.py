"""Quantisation: Keras' int8/int4 modes on keras_unitscale models (`modes`) and a k-bit
weight quantiser for the k-bit inference study (`kbit`). See `docs/kbit.md`."""

from keras_unitscale.quantization.kbit import (
    BLOCK_SIZES,
    DTYPES,
    QuantizedWeights,
    quantize_model_weights,
    quantize_weights,
)
from keras_unitscale.quantization.modes import quantize_model

__all__ = [
    "BLOCK_SIZES",
    "DTYPES",
    "QuantizedWeights",
    "quantize_model",
    "quantize_model_weights",
    "quantize_weights",
]
