"""Keras' `quantize("int8")` / `quantize("int4")` for the unit-scaled layers' kernels.

A layer mixes in `QuantizableKernels`, creates each matmul or lookup weight with
`self.add_kernel(...)` and reads it with `self.kernel_value(name)`. Then Keras' own API works
on it: `layer.quantize("int8")`, `model.quantize("int4")`, a `.keras` file of a quantised
layer (its `dtype` is Keras' `"int8_from_float32"`, `"int4/128_from_float32"`, ... and `build`
makes the quantised weights), with Keras' weight names (`kernel`, `kernel_scale`,
`kernel_zero`; `embeddings`, `embeddings_scale`, ...) and Keras' arithmetic, reused from
`keras.quantizers`:

- int8: symmetric abs-max per channel (`q = round(w * s)`, `s = 127 / max|w|`, `w ~ q / s`);
- int4 with `block_size=None` or -1: the same with `[-8, 7]`;
- int4 with a block size (Keras' default 128): asymmetric, one scale and zero point per block
  of `block_size` entries along the contracting axis (`w ~ (q - zero) * scale`).
int4 values are packed two per byte along the weight's last axis.

A channel is an output unit of a kernel `[fan_in, fan_out]` (the scale is shared along
`fan_in`, the matmul's contracting axis) and a row of an embedding table `[rows, dim]`. Only
the weights are quantised: activations stay in the compute dtype, and the dequantised weight
enters the same unit-scaled op as before, so every fixed scale (`1 / sqrt(fan_in)`, the
readout's `1 / fan_in`, the LSTM's gate scales) is applied exactly as in float.
"""

import math

import keras
import numpy as np
from keras import ops
from keras import quantizers

from keras_unitscale.backend import keras_internals

_MODES = ("int8", "int4")


def _dequantize_with_sz_map(*args, **kwargs):
    # Keras' grouped dequantisation (`w = (q - zero) * scale`), not in its public API.
    return keras_internals.dequantize_with_sz_map(*args, **kwargs)


def _int4_block_size(layer, config):
    """The int4 block size: from the config (a quantize call) or the policy (a loaded layer)."""
    block = keras_internals.get_block_size_for_layer(layer, config)
    return None if block in (None, -1) else int(block)


class QuantizableKernels:
    """Mixin for a `keras.layers.Layer` whose kernels Keras' `quantize()` may quantise."""

    def add_kernel(self, name, shape, channel_axis, attribute=None, **kwargs):
        """`add_weight(name=name, shape=shape, **kwargs)`, or the quantised weights of it
        when the layer's dtype policy is a quantised one (a layer loaded from a config).

        `channel_axis` (0 or 1 of a 2-D weight) holds one scale per entry; `attribute` is
        the layer attribute the caller stores the weight in (default `name`), the key of
        `kernel_value`. Returns the float variable, or the integer one.
        """
        attribute = attribute or name
        specs = self.__dict__.setdefault("_kernel_specs", {})
        specs[attribute] = (tuple(int(d) for d in shape), int(channel_axis), name)
        mode = self.quantization_mode
        if mode is None:
            return self.add_weight(name=name, shape=shape, **kwargs)
        if mode not in _MODES:
            raise self._quantization_mode_error(mode)
        return self._quantized_variables(attribute, mode, _int4_block_size(self, None))

    # The stored layout ------------------------------------------------------------------
    def _quantized_variables(self, attribute, mode, block):
        shape, channel_axis, name = self._kernel_specs[attribute]
        stored = shape if mode == "int8" else shape[:-1] + ((shape[-1] + 1) // 2,)
        variable = self.add_weight(name=name, shape=stored, initializer="zeros",
                                   dtype="int8", trainable=False)
        channels, reduced = shape[channel_axis], shape[1 - channel_axis]
        if mode == "int8" or block is None:
            scale_shape = (channels,)
        else:
            groups = math.ceil(reduced / block)
            # Oriented as the weight: [groups, channels] for a kernel, [rows, groups] for a table.
            scale_shape = (groups, channels) if channel_axis == 1 else (channels, groups)
        setattr(self, f"{attribute}_scale", self.add_weight(
            name=f"{name}_scale", shape=scale_shape, initializer="ones", trainable=False
        ))
        if mode == "int4" and block is not None:
            setattr(self, f"{attribute}_zero", self.add_weight(
                name=f"{name}_zero", shape=scale_shape, initializer="zeros", dtype="int8",
                trainable=False,
            ))
        self.__dict__.setdefault("_kernel_blocks", {})[attribute] = block
        self._is_quantized = True
        return variable

    # Reading ----------------------------------------------------------------------------
    def kernel_value(self, name):
        """Weight `name` as a float tensor: the variable itself, or its dequantised value."""
        variable = getattr(self, name)
        mode = self.quantization_mode
        if mode is None:
            return variable
        shape, channel_axis, _ = self._kernel_specs[name]
        q = ops.convert_to_tensor(variable)
        if mode == "int4":
            q = quantizers.unpack_int4(q, shape[-1], axis=-1)
        scale = ops.convert_to_tensor(getattr(self, f"{name}_scale"))
        block = self._kernel_blocks.get(name)
        dtype = self.compute_dtype
        if mode == "int8" or block is None:
            scale = ops.expand_dims(scale, 1 - channel_axis)  # broadcast along the reduced axis
            return ops.cast(ops.divide(ops.cast(q, "float32"), scale), dtype)
        zero = ops.convert_to_tensor(getattr(self, f"{name}_zero"))
        if channel_axis == 0:  # Keras' grouped dequantisation works on [reduced, channels]
            q, scale, zero = ops.transpose(q), ops.transpose(scale), ops.transpose(zero)
        groups = ops.floor_divide(ops.arange(shape[1 - channel_axis], dtype="int32"), block)
        w = _dequantize_with_sz_map(
            ops.cast(q, "float32"), scale, zero, groups, group_axis=0
        )
        return ops.cast(ops.transpose(w) if channel_axis == 0 else w, dtype)

    def kernel_rows(self, name, ids):
        """`take(kernel_value(name), ids, axis=0)` for a weight with `channel_axis=0` (a
        table), dequantising only the rows looked up."""
        mode = self.quantization_mode
        if mode is None or self._kernel_blocks.get(name) is not None:
            return ops.take(self.kernel_value(name), ids, axis=0)
        shape, _, _ = self._kernel_specs[name]
        rows = ops.take(getattr(self, name), ids, axis=0)
        if mode == "int4":
            rows = quantizers.unpack_int4(rows, shape[-1], axis=-1)
        scale = ops.take(getattr(self, f"{name}_scale"), ids, axis=0)
        rows = ops.divide(ops.cast(rows, "float32"), ops.expand_dims(scale, -1))
        return ops.cast(rows, self.compute_dtype)

    # Keras' hooks -----------------------------------------------------------------------
    def quantize(self, mode=None, type_check=True, config=None):
        """Quantises every kernel of the layer to `mode` ("int8" or "int4"), as Keras'
        `Dense.quantize` does, and sets Keras' quantised dtype policy."""
        if mode not in _MODES:
            raise self._quantization_mode_error(mode)
        QuantizationConfig = keras_internals.quantization_config_class()
        block = _int4_block_size(self, config) if mode == "int4" else None
        if config is not None and QuantizationConfig.weight_quantizer_or_default(
            config, None
        ) is not None:
            raise ValueError(
                "`config` with a custom `weight_quantizer` is not supported by "
                f"{type(self).__name__}: its kernels use Keras' default abs-max quantiser."
            )
        self.quantization_config = config
        for name in self._kernel_specs:
            values = ops.convert_to_numpy(getattr(self, name)).astype("float32")
            _drop_variable(self, name)
            setattr(self, name, self._quantized_variables(name, mode, block))
            self._assign_quantized(name, values, mode, block)
        if self.dtype_policy.quantization_mode is None:
            policy = mode if mode == "int8" else f"int4/{-1 if block is None else block}"
            self.dtype_policy = keras.dtype_policies.get(f"{policy}_from_{self.dtype_policy.name}")

    def _assign_quantized(self, name, values, mode, block):
        _, channel_axis, _ = self._kernel_specs[name]
        matrix = values if channel_axis == 1 else values.T  # [reduced, channels]
        if mode == "int8" or block is None:
            value_range = (-127, 127) if mode == "int8" else (-8, 7)
            q, scale = quantizers.abs_max_quantize(
                matrix, axis=0, value_range=value_range, dtype="int8", to_numpy=True
            )
            scale, zero = np.squeeze(ops.convert_to_numpy(scale), 0), None
        else:
            q, scale, zero = quantizers.abs_max_quantize_grouped_with_zero_point(
                matrix, block_size=block, value_range=(-8, 7), dtype="int8", to_numpy=True
            )
            scale, zero = ops.convert_to_numpy(scale), ops.convert_to_numpy(zero)
        q = ops.convert_to_numpy(q)
        if channel_axis == 0:
            q = q.T
            scale = scale.T
            zero = None if zero is None else zero.T
        if mode == "int4":
            q = ops.convert_to_numpy(quantizers.pack_int4(q, axis=-1)[0])
        getattr(self, name).assign(q)
        getattr(self, f"{name}_scale").assign(scale)
        if zero is not None:
            getattr(self, f"{name}_zero").assign(zero)

    def _int8_call(self, *args, **kwargs):
        return self.call(*args, **kwargs)

    def _int4_call(self, *args, **kwargs):
        return self.call(*args, **kwargs)


def _drop_variable(layer, name):
    """`del layer.<name>` for a variable, without the `gc.collect()` that Keras'
    `Layer.__delattr__` runs after each one (a second or more per variable in a process with a
    large heap: most of the time of quantising a small model). `quantize_model` collects once,
    after every layer is done, so the float buffers are still freed before it returns."""
    layer._untrack_variable(getattr(layer, name))
    super(keras.layers.Layer, layer).__delattr__(name)

