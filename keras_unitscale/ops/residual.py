"""Addition and weighted residual connections.

`add(a, b)`: the sum of two independent unit tensors has std `sqrt(2)`, so the output is
scaled by `2 ** -0.5`; both inputs are non-cut edges and share the constrained scale.

A residual layer `y = a * f(x) + b * x` with `a = tau / sqrt(1 + tau^2)` and
`b = 1 / sqrt(1 + tau^2)` keeps a unit stream unit for any `tau` (the branch weight relative to
the skip). It is split in two ops so that the backward pass is unit too:
- `residual_split(x, tau)` returns `(residual, skip)`, both equal to `x`; on the way back it
  multiplies the branch's gradient by `a` and the skip's by `b` before they are summed;
- `residual_add(residual, skip, tau)` returns `a * residual + b * skip` forward and passes
  the gradient to both unchanged.
Together they apply `a` and `b` exactly once each way, so the summed gradient is the true
gradient of `y` while every tensor in the branch sees a unit gradient.

The depth rules, which choose every block's `tau`s so that each branch adds a fixed share of
the stream, live here too: `residual_taus` (any sequence of branches),
`transformer_residual_taus` (attention + MLP blocks) and `decoder_residual_taus`
(self-attention + cross-attention + MLP blocks).
"""

import math

from keras import ops

from keras_unitscale._validation import non_negative_number, positive_int, positive_number
from keras_unitscale.ops.constraints import apply_constraint
from keras_unitscale.ops.scale import scale_bwd, scale_fwd


def add(a, b, constraint="to_output_scale"):
    """Unit-scaled `a + b`.

    Example:
    >>> import numpy as np
    >>> from keras_unitscale import ops as uops
    >>> float(uops.add(np.float32(1.0), np.float32(1.0)))  # (1 + 1) / sqrt(2)
    1.4142135381698608
    """
    out, ga, gb = apply_constraint(constraint, 2**-0.5, 1.0, 1.0)
    # The sum's own gradient is unit for each input; the constraint may change that.
    return scale_fwd(scale_bwd(a, ga) + scale_bwd(b, gb), out)


def residual_coefficients(tau):
    """`(branch_weight, skip_weight) = (tau, 1) / sqrt(1 + tau^2)`."""
    t = non_negative_number(tau, "tau")
    norm = math.sqrt(1.0 + t * t)
    return t / norm, 1.0 / norm


def residual_split(x, tau=1.0):
    """Returns `(residual, skip)`, both `x` forward; see the module docstring."""
    a, b = residual_coefficients(tau)
    return scale_bwd(x, a), scale_bwd(x, b)


def residual_add(residual, skip, tau=1.0):
    """Returns `a * residual + b * skip`; see the module docstring."""
    a, b = residual_coefficients(tau)
    return scale_fwd(residual, a) + scale_fwd(skip, b)


def residual_taus(branch_weights):
    """Per-layer `tau`s that give each branch a fixed share of the final residual stream.

    Start from an embedding of variance 1 and let branch `l` add variance `w_l` to an
    un-normalised stream, `V_l = 1 + w_1 + ... + w_l`. Normalising after each layer,
    `y_l = (sqrt(V_{l-1}) x_{l-1} + sqrt(w_l) f_l) / sqrt(V_l)`, which is `residual_add` with
    `tau_l = sqrt(w_l / V_{l-1})`. Branch `l` then makes up `w_l / V_L` of the final stream,
    whatever its depth.
    """
    taus, total = [], 1.0
    for w in branch_weights:
        w = non_negative_number(w, "branch_weights")
        taus.append(math.sqrt(w / total))
        total += w
    return taus


def transformer_residual_taus(num_blocks, residual_mult=1.0, residual_attn_ratio=1.0):
    """u-muP's depth rule for a pre-norm transformer: `[(tau_attn, tau_mlp), ...]`.

    The `2 * num_blocks` branches together add `residual_mult ** 2` times the embedding's
    variance; each attention branch adds `residual_attn_ratio ** 2` times what each MLP
    branch adds. Every attention layer thus contributes equally, as does every MLP layer.

    Example:
    >>> from keras_unitscale import ops as uops
    >>> [round(t, 4) for t in uops.transformer_residual_taus(1)[0]]
    [0.7071, 0.5774]
    """
    num_blocks, residual_mult, residual_attn_ratio = _depth_rule_arguments(
        num_blocks, residual_mult, residual_attn_ratio
    )
    mlp = 2.0 * residual_mult**2 / (2 * num_blocks * (1.0 + residual_attn_ratio**2))
    attn = residual_attn_ratio**2 * mlp
    taus = residual_taus([attn, mlp] * int(num_blocks))
    return [(taus[2 * i], taus[2 * i + 1]) for i in range(int(num_blocks))]


def _depth_rule_arguments(num_blocks, residual_mult, residual_attn_ratio):
    """The depth rules' arguments, checked: a positive int and two positive numbers."""
    return (
        positive_int(num_blocks, "num_blocks"),
        positive_number(residual_mult, "residual_mult"),
        positive_number(residual_attn_ratio, "residual_attn_ratio"),
    )


def decoder_residual_taus(num_blocks, residual_mult=1.0, residual_attn_ratio=1.0):
    """u-muP depth rule for blocks with self-attention, cross-attention and an MLP.

    As `transformer_residual_taus`, with each cross-attention layer counted as one more
    attention branch: the `3 * num_blocks` branches add `residual_mult ** 2` times the
    embedding's variance, each attention branch `residual_attn_ratio ** 2` times what an MLP
    branch adds. Returns `[(tau_self, tau_cross, tau_mlp), ...]`.

    Example:
    >>> from keras_unitscale import ops as uops
    >>> [round(t, 4) for t in uops.decoder_residual_taus(1)[0]]
    [0.5774, 0.5, 0.4472]
    """
    num_blocks, residual_mult, residual_attn_ratio = _depth_rule_arguments(
        num_blocks, residual_mult, residual_attn_ratio
    )
    mlp = residual_mult**2 / (num_blocks * (2.0 * residual_attn_ratio**2 + 1.0))
    attn = residual_attn_ratio**2 * mlp
    taus = residual_taus([attn, attn, mlp] * int(num_blocks))
    return [tuple(taus[3 * i : 3 * i + 3]) for i in range(int(num_blocks))]
