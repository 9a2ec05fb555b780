"""keras-unitscale: unit-scaled Keras 3 layers, ops and models.

Unit scaling puts a fixed scale on every op, separately in the forward and the backward pass,
so that at initialisation every activation, gradient and weight has a standard deviation near
one. Such models train in FP16 without loss scaling and in FP8 by plain casting.

Public API:
- `keras_unitscale.ops`: the functional core (`scale_fwd`, `scale_bwd`, `linear`, ...).
- `keras_unitscale.layers`: drop-in replacements for Keras layers.
- `keras_unitscale.losses`: unit-scaled losses whose values equal Keras' own.
"""

__version__ = "0.1.0"

from keras_unitscale import ops  # noqa: E402
from keras_unitscale import layers  # noqa: E402
from keras_unitscale import losses  # noqa: E402
from keras_unitscale import models  # noqa: E402
