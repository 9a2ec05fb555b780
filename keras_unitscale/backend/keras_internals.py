"""The parts of Keras outside its public API that this library uses, in one place.

Each is imported from `keras.src` when first called, so a Keras release that moves one breaks
here, by name, and nowhere else.
"""


def dequantize_with_sz_map(*args, **kwargs):
    """Keras' grouped dequantisation, `w = (q - zero) * scale` (its int4 block layout)."""
    from keras.src.quantizers.quantizers import dequantize_with_sz_map as dequantize

    return dequantize(*args, **kwargs)


def get_block_size_for_layer(layer, config):
    """Keras' int4 block size for `layer` from a quantization config or the layer's policy."""
    from keras.src.quantizers.quantization_config import get_block_size_for_layer as block_size

    return block_size(layer, config)


def quantization_config_class():
    """Keras' `QuantizationConfig` class."""
    from keras.src.quantizers.quantization_config import QuantizationConfig

    return QuantizationConfig


def should_quantize_layer(layer, filters):
    """Whether Keras' `Model.quantize(filters=...)` would quantise `layer`."""
    from keras.src.quantizers.utils import should_quantize_layer as should_quantize

    return should_quantize(layer, filters)


def functional_class():
    """Keras' `Functional` model class (what `keras.Model(inputs, outputs)` builds)."""
    from keras.src.models.functional import Functional

    return Functional
