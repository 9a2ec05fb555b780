"""The one package that knows which backend runs.

Everything else in keras-unitscale is written against `keras.ops`. What cannot be, lives here,
by kind:

- `gradients`: `custom_gradient` (a portable wrapper over `keras.ops.custom_gradient`),
  `vjp` and `layer_vjp` (forward values plus a pull-back, for scale analysis and tests);
- `tensors`: `concrete_value`, `get_keras_mask` / `set_keras_mask`, `num_replicas_in_sync`
  (how many replicas a `tf.distribute` strategy splits a batch over);
- `compile`: `compile_pure`, `compile_stateful`, `export_endpoint_options`;
- `keras_internals`: the parts of Keras outside its public API that this library uses;
- `kernels`: the fused kernels `keras.ops` does not expose (`rnn`, `fused_rnn`,
  `cudnn_disables_jit`, `fused_attention`, `cudnn_attention_available`,
  `has_fused_float32_cross_entropy`, `exact_gelu`).

Import the names from `keras_unitscale.backend` itself.
"""

from keras_unitscale.backend._common import backend_name
from keras_unitscale.backend.compile import (
    compile_pure,
    compile_stateful,
    export_endpoint_options,
)
from keras_unitscale.backend.gradients import custom_gradient, layer_vjp, vjp
from keras_unitscale.backend.kernels import (
    cudnn_attention_available,
    cudnn_disables_jit,
    exact_gelu,
    fused_attention,
    fused_rnn,
    has_fused_float32_cross_entropy,
    rnn,
)
from keras_unitscale.backend.tensors import (
    concrete_value,
    get_keras_mask,
    num_replicas_in_sync,
    set_keras_mask,
)

__all__ = [
    "backend_name",
    "compile_pure",
    "compile_stateful",
    "concrete_value",
    "cudnn_attention_available",
    "cudnn_disables_jit",
    "custom_gradient",
    "exact_gelu",
    "export_endpoint_options",
    "fused_attention",
    "fused_rnn",
    "get_keras_mask",
    "has_fused_float32_cross_entropy",
    "layer_vjp",
    "num_replicas_in_sync",
    "rnn",
    "set_keras_mask",
    "vjp",
]
