"""The functional core: every unit-scaling rule lives here, once.

Pure functions of tensors and static shapes. Layers in `keras_unitscale.layers` are thin
wrappers over these.
"""

from keras_unitscale.ops.activations import MEANS as ACTIVATION_MEANS
from keras_unitscale.ops.activations import SCALES as ACTIVATION_SCALES
from keras_unitscale.ops.activations import activation, gelu, relu, sigmoid, silu, tanh
from keras_unitscale.ops.constraints import CONSTRAINTS, apply_constraint, validate_constraint
from keras_unitscale.ops.cross_entropy import (
    logit_grad_scale,
    per_token_cross_entropy,
    sparse_softmax_cross_entropy,
)
from keras_unitscale.ops.dropout import dropout
from keras_unitscale.ops.embedding import embedding
from keras_unitscale.ops.linear import linear, matmul, readout
from keras_unitscale.ops.norms import layer_norm, rms_norm
from keras_unitscale.ops.residual import (
    add,
    decoder_residual_taus,
    residual_add,
    residual_coefficients,
    residual_split,
    residual_taus,
    transformer_residual_taus,
)
from keras_unitscale.ops.scale import leading_size, rsqrt_size, scale_bwd, scale_fwd
from keras_unitscale.ops.softmax import softmax, softmax_scales
from keras_unitscale.ops.attention import (
    attended_keys,
    attention_output_scale,
    causal_mask,
    dot_product_attention,
)
from keras_unitscale.ops.position import (
    position_embedding,
    rotary_embedding,
    sinusoidal_encoding,
)
from keras_unitscale.ops.recurrent import gru, gru_scales, lstm, lstm_scales
from keras_unitscale.ops.formats import (
    FORMATS,
    FP8Simulation,
    cast_to_format,
    get_format,
    quantize_bwd,
    quantize_fwd,
)

# Registers FP8Native with Keras, so a layer's saved `fp8` setting deserialises whichever of
# these modules was imported first (`formats` no longer imports `fp8_native`: it imports it).
from keras_unitscale.ops import fp8_native  # noqa: E402,F401
