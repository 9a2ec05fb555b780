"""Native FP8 (`enable_fp8(mode="native")`): casts, arithmetic, API, saving, HLO.

The native arithmetic is JAX's FP8 dot; on a machine without FP8 hardware it runs here inside
the private `_emulate_fp8_hardware()` override (XLA:CPU emulates FP8 dots). The test that the
optimized HLO holds cuBLASLt FP8 GEMMs needs an FP8 GPU and is skipped elsewhere.
"""

import warnings

import keras
import numpy as np
import pytest

import keras_unitscale as ku
from keras_unitscale import ops as uops
from keras_unitscale.backend import vjp
from keras_unitscale.ops.formats import FP8Simulation, cast_to_format
from keras_unitscale.ops.fp8_native import (
    FP8Native,
    _emulate_fp8_hardware,
    fp8_hardware,
    fp8_hlo_report,
)
from keras_unitscale.precision import (
    RECORD_KEY,
    disable_fp8,
    enable_fp8,
    fp8_status,
    simulate_fp8,
)

JAX = keras.backend.backend() == "jax"
jax_only = pytest.mark.skipif(not JAX, reason="native FP8 arithmetic is JAX's FP8 dot")
HARDWARE = fp8_hardware()[0]


def _np(t):
    return np.asarray(keras.ops.convert_to_numpy(t))


def _rng_inputs(*shapes, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype("float32") for s in shapes]


# Casts and arithmetic ----------------------------------------------------------------------


@jax_only
@pytest.mark.parametrize("fmt", ["e4m3", "e5m2"])
@pytest.mark.parametrize("overflow", ["saturate", "inf_nan"])
def test_native_cast_equals_the_simulated_cast(fmt, overflow):
    from keras_unitscale.ops.fp8_native import _f8

    rng = np.random.default_rng(1)
    x = np.concatenate([
        rng.standard_normal(4000) * 2.0 ** rng.integers(-20, 18, 4000),
        [0.0, -0.0, 448.0, 464.0, 1e5, 6e4, -7e4, np.inf, -np.inf, np.nan, 2.0**-9, 2.0**-17],
    ]).astype("float32")
    native = np.asarray(_f8(x, fmt, overflow == "saturate").astype("float32"))
    simulated = _np(cast_to_format(x, fmt, overflow=overflow))
    np.testing.assert_array_equal(native, simulated)


def _pair(fn, args, cotangent):
    """Outputs and gradients of `fn(*args, fp8=...)`, simulated and native (emulated)."""
    results = []
    for fp8 in (FP8Simulation(), FP8Native()):
        with _emulate_fp8_hardware():
            y, pullback = vjp(lambda *a: fn(*a, fp8=fp8), *args)
            grads = pullback(cotangent)
        results.append([_np(y)] + [_np(g) for g in grads])
    return results


@jax_only
@pytest.mark.parametrize("op", ["linear", "readout"])
def test_linear_and_readout_native_agree_with_simulation(op):
    # fan_in 48, fan_out 24: scales that are not powers of two, so the two differ by float32
    # rounding (where the scale is applied), never by an FP8 rounding.
    x, w, g = _rng_inputs((3, 5, 48), (48, 24), (3, 5, 24))
    simulated, native = _pair(getattr(uops, op), (x, w), g)
    plain = _np(getattr(uops, op)(x, w))
    for s, n in zip(simulated, native):
        np.testing.assert_allclose(n, s, rtol=2e-5, atol=2e-6 * np.abs(s).max())
    # Both really are FP8: far from the float32 product.
    assert np.abs(native[0] - plain).max() > 1e-3 * np.abs(plain).max()


@jax_only
def test_matmul_native_agrees_with_simulation_including_broadcast():
    a, b, g = _rng_inputs((2, 3, 6, 40), (1, 3, 40, 12), (2, 3, 6, 12), seed=2)
    simulated, native = _pair(uops.matmul, (a, b), g)
    assert native[2].shape == b.shape  # the broadcast batch axis summed back
    for s, n in zip(simulated, native):
        np.testing.assert_allclose(n, s, rtol=2e-5, atol=2e-6 * np.abs(s).max())


@jax_only
def test_native_bfloat16_output_and_gradient_dtypes():
    import jax.numpy as jnp

    x, w, g = _rng_inputs((8, 32), (32, 16), (8, 16), seed=3)
    x, w, g = (jnp.asarray(t, jnp.bfloat16) for t in (x, w, g))
    with _emulate_fp8_hardware():
        y, pullback = vjp(lambda a, b: uops.linear(a, b, fp8=FP8Native()), x, w)
        dx, dw = pullback(g)
    assert (y.dtype, dx.dtype, dw.dtype) == (jnp.bfloat16,) * 3
    y32, pullback32 = vjp(lambda a, b: uops.linear(a, b, fp8=FP8Simulation()),
                          *(t.astype(jnp.float32) for t in (x, w)))
    expected = [y32] + list(pullback32(g.astype(jnp.float32)))
    for actual, e in zip((y, dx, dw), expected):
        e = np.asarray(e)
        np.testing.assert_allclose(np.asarray(actual.astype(jnp.float32)), e,
                                   rtol=1e-2, atol=1e-2 * np.abs(e).max())


# A small model -----------------------------------------------------------------------------


def _backbone():
    return ku.models.TransformerDecoderBackbone(
        vocabulary_size=32, num_layers=1, num_heads=2, hidden_dim=16, intermediate_dim=32,
        max_sequence_length=8, name="fp8_backbone",
    )


@pytest.fixture(scope="module")
def block_model():
    return _block_model()


def _block_model():
    """A small model: a transformer decoder block (attention, MLP) and a readout."""
    keras.utils.set_random_seed(1)
    inputs = keras.Input((8, 16))
    h = ku.layers.TransformerDecoderBlock(2, 32, name="block")(inputs)
    outputs = ku.layers.Dense(8, readout=True, name="head")(h)
    return ku.models.UnitScaledModel(inputs, outputs)


def _loss_and_grads(model, x, labels):
    import jax

    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]

    def loss_fn(weights):
        logits, _ = model.stateless_call(weights, non_trainable, x)
        return keras.ops.mean(
            keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
        )

    loss, grads = jax.jit(jax.value_and_grad(loss_fn))(trainable)
    return float(loss), [np.asarray(g) for g in grads]


@jax_only
def test_a_small_model_native_agrees_with_simulation(block_model):
    model = block_model
    x = _rng_inputs((2, 8, 16), seed=8)[0]
    labels = np.random.default_rng(8).integers(0, 8, (2, 8))
    enable_fp8(model, mode="simulate", keep=())
    simulated = _loss_and_grads(model, x, labels)
    with _emulate_fp8_hardware():
        enable_fp8(model, mode="native", keep=())
        native = _loss_and_grads(model, x, labels)
    assert native[0] == pytest.approx(simulated[0], rel=1e-5)
    assert len(native[1]) == len(model.trainable_variables) >= 7
    for s, n in zip(simulated[1], native[1]):
        np.testing.assert_allclose(n, s, rtol=1e-4, atol=1e-4 * max(np.abs(s).max(), 1e-12))


@jax_only
def test_lowered_training_step_has_f8_dots(block_model):
    x = _rng_inputs((2, 8, 16), seed=9)[0]
    trainable = [v.value for v in block_model.trainable_variables]
    non_trainable = [v.value for v in block_model.non_trainable_variables]

    def report():
        import jax

        # A new function each time: JAX caches a function's trace.
        def step(weights):
            return jax.grad(
                lambda w: keras.ops.sum(block_model.stateless_call(w, non_trainable, x)[0])
            )(weights)

        return fp8_hlo_report(step, trainable, optimized=False)

    counts = {}
    for keep_critical in (False, True):
        with _emulate_fp8_hardware():
            enable_fp8(block_model, mode="native", keep=(), keep_critical=keep_critical)
            counts[keep_critical] = report()
    enable_fp8(block_model, mode="simulate", keep=())
    simulated = report()
    disable_fp8(block_model)
    plain = report()
    # q, k, v, output projections, MLP up and down, readout: 7 matmuls, each with its forward
    # and weight-gradient products in FP8, and its input-gradient product where one is needed
    # (not for q, k, v, whose input is the model input: JAX prunes unused products).
    assert counts[False]["f8_dots"] >= 7 * 2 + 3
    # Critical ones kept: the attention output and MLP down projections (3 products each).
    assert counts[True]["f8_dots"] == counts[False]["f8_dots"] - 6
    # The simulation casts in float32: no FP8 dot.
    assert simulated["f8_dots"] == plain["f8_dots"] == 0
    assert plain["dots"] >= counts[False]["f8_dots"]


@pytest.mark.skipif(not (JAX and HARDWARE), reason="needs an FP8 GPU (compute capability 8.9+)")
def test_optimized_hlo_runs_fp8_gemms():
    report = fp8_hlo_report(
        lambda x, w: uops.linear(x, w, fp8=FP8Native()),
        *_rng_inputs((256, 256), (256, 256)),
    )
    assert report["fp8_gemms"] >= 1, report


# The API -----------------------------------------------------------------------------------


def _small():
    inputs = keras.Input((16,))
    h = ku.layers.Dense(32, name="hidden")(inputs)
    h = ku.layers.MLP(32, name="mlp")(h)
    outputs = ku.layers.Dense(4, readout=True, name="head")(h)
    return ku.models.UnitScaledModel(inputs, outputs, name="small")


def test_native_refuses_a_machine_without_fp8_hardware():
    if HARDWARE:
        pytest.skip("this machine has FP8 hardware")
    with pytest.raises(RuntimeError, match=r"mode=\"simulate\"") as info:
        enable_fp8(_small(), mode="native")
    assert fp8_hardware()[1] in str(info.value)
    expected = "JAX device" if JAX else "'tensorflow' backend"
    assert expected in str(info.value)


def test_enable_fp8_keeps_the_readout_by_default_and_critical_matmuls_on_request():
    model = enable_fp8(_small(), mode="simulate")
    status = fp8_status(model)
    assert status["head"] is None
    assert all(isinstance(status[n], FP8Simulation) for n in ("hidden", "up", "down"))
    enable_fp8(model, mode="simulate", keep_critical=True)
    status = fp8_status(model)
    assert status["down"] is None and status["head"] is None
    assert isinstance(status["up"], FP8Simulation)
    enable_fp8(model, mode="simulate", keep=())
    assert all(v is not None for v in fp8_status(model).values())
    # simulate_fp8 is enable_fp8(mode="simulate") keeping nothing by default.
    assert fp8_status(simulate_fp8(_small())) == fp8_status(model)


def test_enable_fp8_errors():
    with pytest.raises(ValueError, match="`mode`"):
        enable_fp8(_small(), mode="fast")
    with pytest.raises(ValueError, match="only `overflow`"):
        enable_fp8(_small(), mode="native", rounding="stochastic")
    with pytest.raises(ValueError, match="`keep_critical`"):
        enable_fp8(_small(), mode="simulate", keep_critical="yes")
    with pytest.raises(ValueError, match="keep_matmuls"):
        FP8Simulation(keep_matmuls=("mlp_up",))


def test_attention_keeps_its_output_projection_on_request():
    x = _rng_inputs((2, 6, 16), seed=5)[0]
    layer = ku.layers.MultiHeadAttention(2, 8)
    plain = _np(layer(x, x))
    layer.fp8 = FP8Simulation(forward_format="e5m2")
    all_fp8 = _np(layer(x, x))
    layer.fp8 = FP8Simulation(forward_format="e5m2", keep_matmuls=("attention_output",))
    kept = _np(layer(x, x))
    # Keeping one projection out of FP8 changes the output, and not back to the plain one.
    assert not np.allclose(kept, all_fp8) and not np.allclose(kept, plain)


# Saving ------------------------------------------------------------------------------------


def _native_model():
    """A model switched to native FP8 (emulated here where there is no FP8 hardware)."""
    model = _small()
    if JAX:
        with _emulate_fp8_hardware():
            enable_fp8(model, mode="native", keep_critical=True)
    else:
        # TensorFlow cannot run native FP8; set what a JAX session would have saved.
        model.get_layer("hidden").fp8 = FP8Native()
        model.get_layer("mlp").up.fp8 = FP8Native()
    return model


def test_keras_file_keeps_the_setting_and_falls_back_to_simulation(tmp_path):
    model = _native_model()
    path = tmp_path / "native.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    assert fp8_status(restored) == fp8_status(model)
    assert isinstance(restored.get_layer("hidden").fp8, FP8Native)
    x = _rng_inputs((4, 16), seed=6)[0]
    simulated = simulate_fp8(keras.saving.load_model(path), keep=("head", "down"))
    if HARDWARE:
        pytest.skip("the fall-back runs only without FP8 hardware")
    with pytest.warns(UserWarning, match="no FP8 matrix hardware"):
        from keras_unitscale.ops import fp8_native

        fp8_native._WARNED.clear()
        y = _np(restored(x))
    np.testing.assert_allclose(y, _np(simulated(x)), rtol=1e-6, atol=1e-6)


def test_simulation_settings_survive_a_keras_file(tmp_path):
    model = enable_fp8(_small(), mode="simulate", rounding="stochastic", seed=3)
    model.save(tmp_path / "sim.keras")
    restored = keras.saving.load_model(tmp_path / "sim.keras")
    assert fp8_status(restored) == fp8_status(model)
    hidden = restored.get_layer("hidden")
    # The stochastic simulation's generator is tracked, so a compiled step carries its state.
    assert any(g is hidden.fp8.seed_generator for g in hidden._seed_generators)


def test_backbone_task_config_and_preset_keep_the_setting(tmp_path):
    lm = ku.models.CausalLM(_backbone(), tie_weights=False, name="fp8_lm")
    enable_fp8(lm, mode="simulate", keep_critical=True)
    config = lm.get_config()
    assert RECORD_KEY in config["backbone"]["config"]
    clone = ku.models.CausalLM.from_config(config)
    assert fp8_status(clone) == fp8_status(lm)
    assert fp8_status(clone)["down"] is None and fp8_status(clone)["up"] is not None
    assert fp8_status(clone)["self_attention"].keep_matmuls == ("attention_output",)
    lm.backbone.save_to_preset(str(tmp_path / "preset"))
    loaded = ku.models.TransformerDecoderBackbone.from_preset(str(tmp_path / "preset"))
    assert fp8_status(loaded) == fp8_status(lm.backbone)
    disable_fp8(lm)
    assert RECORD_KEY not in lm.get_config()["backbone"]["config"]


def _export_and_serve(model, x, path):
    import tensorflow as tf

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serve", model.call,
                         input_signature=[keras.InputSpec(shape=(None, 16), dtype="float32")])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        archive.write_out(str(path), verbose=False)
    loaded = tf.saved_model.load(str(path))  # kept alive: `serve` reads its variables
    return np.asarray(loaded.serve(tf.constant(x)))


def test_export_of_a_native_saved_model_trained_in_simulation(tmp_path):
    x, y = _rng_inputs((8, 16), (8, 4), seed=7)
    # Saved with native FP8 settings, loaded here (the simulation where there is no FP8
    # hardware), trained a step, exported: the served model computes what the model does.
    _native_model().save(tmp_path / "native.keras")
    model = keras.saving.load_model(tmp_path / "native.keras")
    assert isinstance(model.get_layer("hidden").fp8, FP8Native)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.compile(optimizer="sgd", loss="mse")
        model.fit(x, y, epochs=1, batch_size=8, verbose=0)
        expected = _np(model(x))
        served = _export_and_serve(model, x, tmp_path / "exported")
    np.testing.assert_allclose(served, expected, rtol=1e-5, atol=1e-6)
    disable_fp8(model)
    assert not np.allclose(_np(model(x)), expected, rtol=1e-3, atol=1e-4)
