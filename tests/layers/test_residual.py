import keras
import numpy as np
import pytest

import keras_unitscale as ku
from roundtrip import assert_config_roundtrip, assert_keras_roundtrip
from scale_utils import assert_unit, layer_stds, normal


def test_residual_stack_stays_unit():
    taus = ku.ops.transformer_residual_taus(2)
    layers = [ku.layers.Residual(ku.layers.MLP(512), tau=t) for pair in taus for t in pair]
    model = keras.Sequential(layers)
    out, (gx,), weights = layer_stds(model, normal((256, 256)))
    assert_unit(out, "output")
    assert_unit(gx, "input grad", tol=0.2)
    # Inside each branch the gradient is the stream's (unit), so the MLP's down kernel gets
    # `sqrt(1 + MEANS["gelu"] ** 2)` (the second moment of its scaled GELU input) and the
    # up kernel `sqrt(256 / 512) * fwd / bwd` (the down projection's input gradient under
    # `to_output_scale`, through GELU): within 15% (measured within 10%).
    from keras_unitscale.ops.activations import MEANS, SCALES

    fwd, bwd = SCALES["gelu"]
    want = {"down/kernel": (1 + MEANS["gelu"] ** 2) ** 0.5, "up/kernel": 0.5**0.5 * fwd / bwd}
    assert len(weights) == 8
    for path, s in weights.items():
        (expected,) = [w for suffix, w in want.items() if path.endswith(suffix)]
        assert abs(s / expected - 1) <= 0.15, (path, s, expected)


def test_residual_roundtrip(tmp_path):
    layer = ku.layers.Residual(ku.layers.Dense(6), tau=0.3)
    clone = assert_config_roundtrip(layer)
    assert isinstance(clone.layer, ku.layers.Dense)
    assert_keras_roundtrip(layer, normal((2, 6)), tmp_path)


def test_bad_residual_arguments():
    with pytest.raises(ValueError, match="`layer` must be a Keras layer"):
        ku.layers.Residual(lambda x: x)
    with pytest.raises(ValueError, match="`tau` must be a non-negative number"):
        ku.layers.Residual(ku.layers.Dense(2), tau=-1)
