import pytest

import keras_unitscale as ku
from roundtrip import assert_config_roundtrip, assert_keras_roundtrip
from scale_utils import assert_near, assert_unit, layer_stds, normal


def test_plain_mlp_scales():
    layer = ku.layers.MLP(1024, activation="gelu", constraint=None)
    out, (gx,), weights = layer_stds(layer, normal((256, 512)))
    # The scaled GELU has unit std but mean m, so the down projection sees E[h^2] = 1 + m^2.
    second_moment = (1 + ku.ops.ACTIVATION_MEANS["gelu"] ** 2) ** 0.5
    assert_near(out, second_moment, 0.1, "output")
    assert_unit(gx, "input grad")
    assert_unit(weights[layer.up.kernel.path], "up kernel grad")
    assert_near(weights[layer.down.kernel.path], second_moment, 0.1, "down kernel grad")


def test_gated_mlp_scales():
    layer = ku.layers.MLP(1024, activation="silu", gated=True, constraint=None)
    out, (gx,), weights = layer_stds(layer, normal((256, 512)))
    gate = (1 + ku.ops.ACTIVATION_MEANS["silu"] ** 2) ** 0.5  # rms of the scaled silu
    assert_near(out, gate, 0.1, "output")
    # The input feeds two projections, so their (unit and `gate`) gradients add.
    assert_near(gx, (1 + gate**2) ** 0.5, 0.1, "input grad")
    assert_unit(weights[layer.gate.kernel.path], "gate kernel grad")
    assert_near(weights[layer.up.kernel.path], gate, 0.1, "up kernel grad")
    assert_near(weights[layer.down.kernel.path], gate, 0.1, "down kernel grad")


def test_mlp_output_dim_and_roundtrip(tmp_path):
    layer = ku.layers.MLP(32, output_dim=5, gated=True, activation="silu", dropout=0.1)
    assert_config_roundtrip(layer)
    restored = assert_keras_roundtrip(layer, normal((2, 3, 8)), tmp_path)
    assert restored.output_shape == (None, 3, 5)


def test_bad_hidden_dim():
    with pytest.raises(ValueError, match="`hidden_dim` must be a positive integer"):
        ku.layers.MLP(0)
