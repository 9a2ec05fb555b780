import keras
import numpy as np

from keras_unitscale import ops as uops
from scale_utils import assert_unit, fn_stds, normal


def test_layer_norm_scales():
    x = normal((256, 1024)) * 3.0 + 1.0
    gamma, beta = np.ones(1024, "float32"), np.zeros(1024, "float32")
    out, (gx, gg, gb) = fn_stds(lambda x, g, b: uops.layer_norm(x, g, b), x, gamma, beta)
    assert_unit(out, "output")
    assert_unit(gx * 3.0, "input grad (times the input's std)")
    assert_unit(gg, "gain grad")
    assert_unit(gb, "bias grad")


def test_rms_norm_scales():
    x = normal((256, 1024)) * 0.1
    out, (gx, gg) = fn_stds(lambda x, g: uops.rms_norm(x, g), x, np.ones(1024, "float32"))
    assert_unit(out, "output")
    assert_unit(gx * 0.1, "input grad (times the input's std)")
    assert_unit(gg, "gain grad")


def test_norms_keep_16_bit_dtype():
    x = normal((4, 8)).astype("float16")
    assert keras.backend.standardize_dtype(uops.layer_norm(x).dtype) == "float16"
    assert keras.backend.standardize_dtype(uops.rms_norm(x).dtype) == "float16"
