"""Named constraints: one scale for a tensor's forward value and its gradient.

Where a tensor's gradient meets others (every edge except weights and the loss), the forward
and backward scales must agree or the summed gradient is wrong. A constraint picks the one
scale. Weight gradients are never constrained.
"""

from keras_unitscale._validation import one_of

CONSTRAINTS = ("to_output_scale", "to_grad_input_scale", "gmean", None)


def validate_constraint(constraint, name="constraint"):
    """Returns `constraint` if it names a known constraint, else raises `ValueError`."""
    return one_of(constraint, CONSTRAINTS, name)


def apply_constraint(constraint, output_scale, *grad_input_scales):
    """Returns `(output_scale, *grad_input_scales)` after applying `constraint`.

    - `"to_output_scale"`: every scale becomes the output scale (forward std is unit).
    - `"to_grad_input_scale"`: every scale becomes the (geometric mean of the) input-gradient
      scale(s) (backward std is unit).
    - `"gmean"`: the geometric mean of all of them, a compromise.
    - `None`: unchanged; only valid where no gradients are summed.
    """
    validate_constraint(constraint)
    n = len(grad_input_scales)
    if constraint is None or n == 0:
        return (output_scale, *grad_input_scales)
    grad = 1.0
    for s in grad_input_scales:
        grad *= s
    grad = grad ** (1.0 / n)
    if constraint == "to_output_scale":
        s = output_scale
    elif constraint == "to_grad_input_scale":
        s = grad
    else:
        s = (output_scale * grad) ** 0.5
    return (s,) * (n + 1)
