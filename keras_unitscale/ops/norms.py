"""Layer and RMS normalisation.

A normalised tensor is unit by construction, so the input is not rescaled; nor is its
gradient, which normalisation keeps near unit (it only projects out one or two directions).
The learnt gain and bias are weights whose gradients sum over every normalised vector:
`batch` unit values, so both are scaled by `batch ** -0.5`. Statistics are computed in
float32 under 16-bit policies, as Keras' own normalisation layers do.
"""

from keras import ops

from keras_unitscale.ops.scale import leading_size, rsqrt_size, scale_bwd


def _to_float32(x):
    dtype = str(x.dtype)
    return (ops.cast(x, "float32"), x.dtype) if "16" in dtype else (x, None)


def _affine(y, gamma, beta, batch, out_dtype):
    if gamma is not None:
        y = y * ops.cast(scale_bwd(gamma, rsqrt_size(batch)), y.dtype)
    if beta is not None:
        y = y + ops.cast(scale_bwd(beta, rsqrt_size(batch)), y.dtype)
    return ops.cast(y, out_dtype) if out_dtype is not None else y


def layer_norm(x, gamma=None, beta=None, epsilon=1e-5):
    """Normalises the last axis to zero mean and unit variance, then `* gamma + beta`.

    Example:
    >>> import numpy as np
    >>> from keras_unitscale import ops as uops
    >>> y = np.asarray(uops.layer_norm(np.array([[1.0, 3.0]], "float32")))
    >>> np.round(y, 3).tolist()
    [[-1.0, 1.0]]
    """
    batch = leading_size(x)
    x, out_dtype = _to_float32(x)
    mean = ops.mean(x, axis=-1, keepdims=True)
    var = ops.mean(ops.square(x - mean), axis=-1, keepdims=True)
    y = (x - mean) * ops.rsqrt(var + epsilon)
    return _affine(y, gamma, beta, batch, out_dtype)


def rms_norm(x, gamma=None, epsilon=1e-6):
    """Divides the last axis by its root mean square, then `* gamma`.

    Example:
    >>> import numpy as np
    >>> from keras_unitscale import ops as uops
    >>> y = np.asarray(uops.rms_norm(np.array([[3.0, 4.0]], "float32")))
    >>> np.round(y * np.sqrt(12.5), 3).tolist()
    [[3.0, 4.0]]
    """
    batch = leading_size(x)
    x, out_dtype = _to_float32(x)
    y = x * ops.rsqrt(ops.mean(ops.square(x), axis=-1, keepdims=True) + epsilon)
    return _affine(y, gamma, None, batch, out_dtype)
