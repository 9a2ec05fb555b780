"""The layers' argument checks: a re-export of `keras_unitscale._validation`, the one module
that holds them (kept so that existing imports stay short)."""

from keras_unitscale._validation import (  # noqa: F401
    finite_number,
    float_input,
    integer_dtype,
    min_rank,
    non_negative_number,
    one_of,
    positive_int,
    positive_number,
    probability,
    same_shape,
)
