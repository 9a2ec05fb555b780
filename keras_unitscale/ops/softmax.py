"""Scaled softmax.

For `d` unit-normal logits, `p_i = e^{x_i} / sum_j e^{x_j}` and, for large `d`, the
denominator is close to `d E[e^x] = d e^{1/2}`. Hence
- `std(p) = std(e^x) / (d e^{1/2}) = sqrt(e (e - 1)) / (d e^{1/2}) = sqrt(e - 1) / d`, so the
  forward scale is `d / sqrt(e - 1)`;
- the input gradient `p * (g - <p, g>)` for a unit `g` has std close to
  `sqrt(E[p^2]) = sqrt(E[e^{2x}]) / (d e^{1/2}) = sqrt(e) / d`, so the gradient scale is
  `d / sqrt(e)`.
The input is a non-cut edge, so the two are tied by the constraint.
"""

import math

from keras import ops

from keras_unitscale.ops.constraints import apply_constraint
from keras_unitscale.ops.scale import scale_bwd, scale_fwd


def softmax_scales(d):
    """`(forward_scale, grad_scale)` of a softmax over `d` unit-normal entries."""
    return d / math.sqrt(math.e - 1.0), d / math.sqrt(math.e)


def softmax(x, axis=-1, constraint="to_output_scale"):
    """Unit-scaled softmax over `axis`.

    Example:
    >>> import numpy as np
    >>> from keras_unitscale import ops as uops
    >>> x = np.random.default_rng(0).standard_normal((256, 1024)).astype("float32")
    >>> bool(abs(np.asarray(uops.softmax(x)).std() - 1) < 0.1)
    True
    """
    d = x.shape[axis]
    if d is None:
        raise ValueError(f"`softmax` needs a static size on axis {axis}; got shape {x.shape}.")
    fwd, bwd = apply_constraint(constraint, *softmax_scales(int(d)))
    return scale_fwd(ops.softmax(scale_bwd(x, bwd), axis=axis), fwd)
