import keras
import numpy as np
import pytest

import keras_unitscale as ku
from keras_unitscale import ops as uops
from keras_unitscale.ops.formats import FP8Simulation, cast_to_format
from keras_unitscale.precision import disable_fp8, fp8_status, simulate_fp8


def numpy(t):
    return keras.ops.convert_to_numpy(t)


def data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((32, 16)).astype("float32")
    y = rng.standard_normal((32, 4)).astype("float32")
    return x, y


def small_model():
    inputs = keras.Input((16,))
    h = ku.layers.Dense(32, name="hidden")(inputs)
    h = ku.layers.MLP(64, name="mlp")(h)
    outputs = ku.layers.Dense(4, readout=True, name="head")(h)
    return keras.Model(inputs, outputs)


def test_switch_casts_matmul_operands_exactly():
    x, _ = data()
    model = small_model()
    hidden = model.get_layer("hidden")
    simulate_fp8(model)
    probe = keras.Model(model.input, hidden.output)
    kernel, bias = hidden.kernel, hidden.bias
    e4m3 = lambda t: cast_to_format(t, "e4m3")  # noqa: E731
    expected = uops.linear(e4m3(x), e4m3(kernel), bias)
    np.testing.assert_array_equal(numpy(probe(x)), numpy(expected))
    # And it is not the unsimulated value.
    assert np.any(numpy(probe(x)) != numpy(uops.linear(x, kernel, bias)))


def test_keep_and_status():
    model = simulate_fp8(small_model(), keep=("head", "mlp"), rounding="nearest")
    status = fp8_status(model)
    assert status["head"] is None and status["up"] is None and status["down"] is None
    assert status["hidden"] == FP8Simulation()
    # A kept layer computes exactly as without the switch.
    x, _ = data()
    head = model.get_layer("head")
    h_in = keras.Model(model.input, head.input)(x)
    np.testing.assert_array_equal(
        numpy(head(h_in)), numpy(uops.readout(h_in, head.kernel, head.bias))
    )


def test_keep_accepts_a_single_name_and_custom_formats(tmp_path):
    plain = small_model()
    # A UnitScaledModel's config records the settings of layers nested in blocks (the MLP's).
    model = ku.models.UnitScaledModel(plain.inputs, plain.outputs)
    model = simulate_fp8(model, keep="head", forward_format="e5m2", overflow="inf_nan")
    sim = model.get_layer("hidden").fp8
    assert sim.forward_format == "e5m2" and sim.overflow == "inf_nan"
    assert model.get_layer("head").fp8 is None
    # The setting is part of each layer's config: a .keras file keeps it.
    model.save(tmp_path / "m.keras")
    restored = keras.saving.load_model(tmp_path / "m.keras")
    assert fp8_status(restored) == fp8_status(model)
    assert restored.get_layer("hidden").fp8.forward_format == "e5m2"


def test_errors():
    with pytest.raises(ValueError, match="nope"):
        simulate_fp8(small_model(), keep=("nope",))
    plain = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="no layer with an FP8-capable matmul"):
        simulate_fp8(plain)
    with pytest.raises(ValueError, match="rounding"):
        simulate_fp8(small_model(), rounding="down")


def test_switch_after_compile_retraces_and_disable_restores():
    x, _ = data()
    model = small_model()
    model.compile(loss="mse")
    before = model.predict(x, verbose=0)
    simulate_fp8(model)
    during = model.predict(x, verbose=0)
    np.testing.assert_allclose(during, numpy(model(x)), rtol=0, atol=0)
    assert np.any(during != before)
    disable_fp8(model)
    assert all(sim is None for sim in fp8_status(model).values())
    np.testing.assert_array_equal(model.predict(x, verbose=0), before)


def test_fit_with_stochastic_rounding_tracks_seed_state_not_weights():
    x, y = data()
    model = small_model()
    n_weights, n_variables = len(model.weights), len(model.variables)
    simulate_fp8(model, rounding="stochastic", seed=1)
    # Each simulated layer's SeedGenerator is model state (a compiled JAX step carries it),
    # never a weight.
    assert len(model.weights) == n_weights and len(model.variables) > n_variables
    model.compile(optimizer="sgd", loss="mse")
    history = model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    a, b = model.predict(x, verbose=0), model.predict(x, verbose=0)
    assert np.any(a != b)  # fresh rounding noise on every call
    disable_fp8(model)
    assert len(model.variables) == n_variables


class TinyMatmul(keras.layers.Layer):
    """The minimal FP8-capable layer: an `fp8` attribute passed to ops.linear."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.fp8 = None

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1], self.units), initializer="random_normal")

    def call(self, x):
        return uops.linear(x, self.w, fp8=self.fp8)


def test_custom_layer_with_fp8_attribute():
    x, _ = data()
    layer = TinyMatmul(8, name="tiny")
    model = keras.Sequential([keras.Input((16,)), layer])
    simulate_fp8(model, forward_format="fp16", gradient_format=None)
    expected = uops.linear(cast_to_format(x, "fp16"), cast_to_format(layer.w, "fp16"))
    np.testing.assert_array_equal(numpy(model(x)), numpy(expected))
