"""`keras_unitscale.unit_scale`: converting functional and Sequential Keras models."""

import math

import keras
import numpy as np
import pytest

import keras_unitscale as ku
from keras_unitscale.backend import vjp
from tests.roundtrip import assert_keras_roundtrip
from tests.scale_utils import normal

L = keras.layers


def _block_model(num_blocks=2, width=64, length=None, mask_zero=True):
    """A pre-norm transformer classifier written with plain Keras layers."""
    inputs = keras.Input((length,), dtype="int32", name="token_ids")
    x = L.Embedding(200, width, mask_zero=mask_zero, name="embed")(inputs)
    for i in range(num_blocks):
        h = L.LayerNormalization(name=f"attn_norm_{i}")(x)
        h = L.MultiHeadAttention(4, width // 4, name=f"attn_{i}")(h, h, use_causal_mask=True)
        x = L.Add(name=f"attn_add_{i}")([x, h])
        h = L.LayerNormalization(name=f"mlp_norm_{i}")(x)
        h = L.Dense(2 * width, activation="gelu", name=f"mlp_up_{i}")(h)
        h = L.Dense(width, name=f"mlp_down_{i}")(h)
        x = L.Add(name=f"mlp_add_{i}")([x, h])
    pooled = L.GlobalAveragePooling1D(name="pool")(x)
    outputs = L.Dense(3, activation="softmax", name="classify")(pooled)
    return keras.Model(inputs, outputs, name="plain")


@pytest.fixture(scope="module")
def converted():
    keras.utils.set_random_seed(0)
    plain = _block_model()
    model, report = ku.unit_scale(plain, return_report=True)
    return plain, model, report


def test_report_lists_swaps_residuals_readout_and_kept_layers(converted):
    plain, model, report = converted
    assert isinstance(model, ku.models.UnitScaledModel)
    swapped = {name: new for name, _, new in report.swapped}
    assert swapped["embed"] == "keras_unitscale.layers.Embedding"
    assert swapped["attn_0"] == "keras_unitscale.layers.MultiHeadAttention"
    assert swapped["mlp_up_1"] == "keras_unitscale.layers.Dense"
    assert len(report.swapped) == 1 + 5 * 2 + 1
    assert report.readouts == ["classify"]
    assert model.get_layer("classify").readout
    assert not model.get_layer("mlp_down_1").readout
    # u-muP's equal shares: the l-th residual gets tau = sqrt(1 / l), in graph order.
    assert [name for name, _ in report.residuals] == [
        "attn_add_0", "mlp_add_0", "attn_add_1", "mlp_add_1"]
    np.testing.assert_allclose([tau for _, tau in report.residuals],
                               [math.sqrt(1 / n) for n in (1, 2, 3, 4)])
    assert [(name, cls) for name, cls, _ in report.kept] == [("pool", "GlobalAveragePooling1D")]
    assert report.dropped_arguments["embed"] == ["embeddings_initializer"]
    assert "classify: Dense -> keras_unitscale.layers.Dense (readout)" in str(report)
    # Arguments are carried over.
    assert model.get_layer("embed").mask_zero
    assert model.get_layer("mlp_up_0").get_config()["activation"] == "gelu"
    assert model.get_layer("classify").get_config()["activation"] == "softmax"


def test_converted_model_is_unit_scaled_where_keras_is_not(converted):
    plain, model, _ = converted
    ids = np.random.default_rng(1).integers(1, 200, (64, 16))
    names = ["embed", "attn_0", "attn_add_0", "mlp_up_0", "mlp_add_0"]
    ours = keras.Model(model.inputs, [model.get_layer(n).output for n in names])
    theirs = keras.Model(plain.inputs, [plain.get_layer(n).output for n in names])
    for name, o, t in zip(names, ours(ids), theirs(ids)):
        o, t = keras.ops.convert_to_numpy(o), keras.ops.convert_to_numpy(t)
        assert abs(float(np.std(o)) - 1.0) < 0.1, name
        if name == "embed":  # Keras draws embeddings from U(-0.05, 0.05): std 0.029
            assert float(np.std(t)) < 0.05
    # Deeper blocks drift above unit (the attention rule assumes independent values, and after
    # one block the positions share components): 1.3 after the second attention here.
    deeper = keras.Model(model.inputs, model.get_layer("mlp_add_1").output)
    assert 0.8 < float(np.std(keras.ops.convert_to_numpy(deeper(ids)))) < 1.6


def test_converted_model_trains_saves_and_keeps_the_original(converted, tmp_path):
    plain, model, _ = converted
    before = [w.copy() for w in plain.get_weights()]
    rng = np.random.default_rng(2)
    ids = rng.integers(1, 200, (128, 16))
    labels = (ids[:, 0] % 3).astype("int32")
    model.compile(loss="sparse_categorical_crossentropy")
    history = model.fit(ids, labels, epochs=5, batch_size=32, shuffle=False, verbose=0)
    assert history.history["loss"][-1] < 0.9 * history.history["loss"][0]
    for old, new in zip(before, plain.get_weights()):
        np.testing.assert_array_equal(old, new)
    assert_keras_roundtrip(model, ids[:8], tmp_path)


def test_padding_does_not_change_the_converted_output(converted):
    _, model, _ = converted
    ids = np.random.default_rng(3).integers(1, 200, (4, 7))
    short = keras.ops.convert_to_numpy(model(np.pad(ids, ((0, 0), (0, 2)))))
    long = keras.ops.convert_to_numpy(model(np.pad(ids, ((0, 0), (0, 25)))))
    np.testing.assert_allclose(short, long, rtol=1e-5, atol=1e-7)
    assert not np.allclose(short[0], short[1])


def test_residual_pair_is_the_residual_layer_forward_and_backward():
    keras.utils.set_random_seed(4)
    branch = ku.layers.Dense(32, use_bias=False)
    wrapped = ku.layers.Residual(branch, tau=0.6)
    x = np.random.default_rng(5).standard_normal((16, 32)).astype("float32")
    wrapped(x)

    def graph(t):
        residual, skip = ku.layers.ResidualSplit(0.6)(t)
        return ku.layers.ResidualAdd(0.6)([branch(residual), skip])

    upstream = np.random.default_rng(6).standard_normal((16, 32)).astype("float32")
    y_ref, pull_ref = vjp(wrapped, x)
    y, pull = vjp(graph, x)
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(pull(upstream)[0], pull_ref(upstream)[0], rtol=1e-5, atol=1e-6)
    # The true gradient of a*f(x) + b*x with f linear: (a * W / sqrt(fan_in) + b)^T g.
    a, b = 0.6 / math.sqrt(1.36), 1 / math.sqrt(1.36)
    kernel = keras.ops.convert_to_numpy(branch.kernel) / math.sqrt(32)
    np.testing.assert_allclose(y, x @ (a * kernel) + b * x, rtol=1e-4, atol=1e-5)


def test_sequential_model_converts_with_arguments_and_kept_weights():
    keras.utils.set_random_seed(7)
    plain = keras.Sequential([
        keras.Input((10, 6)),
        L.Conv1D(8, 3, name="conv"),
        L.LSTM(16, return_sequences=True, name="lstm"),
        L.GRU(16, name="gru"),
        L.Dropout(0.2, name="drop"),
        L.Dense(4, name="logits"),
    ])
    model, report = ku.unit_scale(plain, return_report=True)
    kept = {name: reason for name, _, reason in report.kept}
    assert set(kept) == {"conv"}
    for old, new in zip(plain.get_layer("conv").get_weights(),
                        model.get_layer("conv").get_weights()):
        np.testing.assert_array_equal(old, new)
    assert model.get_layer("conv") is not plain.get_layer("conv")
    assert model.get_layer("lstm").return_sequences
    assert model.get_layer("drop").rate == 0.2
    assert report.readouts == ["logits"]
    x = np.random.default_rng(8).standard_normal((4, 10, 6)).astype("float32")
    assert tuple(model(x).shape) == (4, 4)


def test_an_argument_without_equivalent_keeps_the_layer_and_says_why():
    inputs = keras.Input((8, 4))
    x = L.GRU(8, reset_after=False, return_sequences=True, name="old_gru")(inputs)
    x = L.GRU(8, name="gru")(x)
    outputs = L.Dense(4, lora_rank=2, name="adapted")(L.Dense(8, name="hidden")(x))
    model, report = ku.unit_scale(keras.Model(inputs, outputs), return_report=True)
    kept = {name: (cls, reason) for name, cls, reason in report.kept}
    assert set(kept) == {"old_gru", "adapted"}
    assert kept["adapted"][0] == "Dense" and "`lora_rank=2`" in kept["adapted"][1]
    assert "no LoRA adapters" in kept["adapted"][1]
    assert kept["old_gru"][1].startswith("`reset_after` must be True")
    assert [name for name, _, _ in report.swapped] == ["gru", "hidden"]
    assert isinstance(model.get_layer("old_gru"), L.GRU)


def _wrapped_and_nested_model():
    """Bidirectional and TimeDistributed layers, and Sequential models used as layers: one
    inside (followed by more layers), one at the output (holding the readout). Its weights are
    drawn with `ones` (the conversion drops initializers; a fill compiles nothing on JAX)."""
    ones = {"kernel_initializer": "ones"}
    recurrent = {**ones, "recurrent_initializer": "ones", "unroll": True}  # see below
    encoder = keras.Sequential([
        keras.Input((6, 8)), L.Dense(16, activation="gelu", name="up", **ones),
        L.LayerNormalization(name="norm")], name="encoder")
    head = keras.Sequential([keras.Input((12,)), L.Dense(3, name="logits", **ones)],
                            name="head")
    inputs = keras.Input((6, 8))
    # Unrolled recurrences: eager calls reuse compiled steps (JAX compiles a scan per call).
    lstm = L.LSTM(6, return_sequences=True, **recurrent)
    x = L.Bidirectional(lstm, merge_mode="sum", name="bi")(encoder(inputs))
    x = L.TimeDistributed(L.Dense(12, activation="relu", **ones), name="td")(x)
    x = L.Bidirectional(L.GRU(6, **recurrent), name="bigru")(x)
    return keras.Model(inputs, head(x))


def test_wrappers_and_nested_models_are_converted_inside(tmp_path):
    keras.utils.set_random_seed(3)
    plain = _wrapped_and_nested_model()
    model, report = ku.unit_scale(plain, return_report=True)
    swapped = {name: (old, new) for name, old, new in report.swapped}
    assert swapped["bi"] == ("Bidirectional(LSTM)", "Bidirectional(keras_unitscale.layers.LSTM/"
                                                    "keras_unitscale.layers.LSTM)")
    assert swapped["td"][0] == "TimeDistributed(Dense)"
    assert set(swapped) == {"encoder/up", "encoder/norm", "bi", "td", "bigru", "head/logits"}
    assert report.kept == [] and report.readouts == ["head/logits"]
    assert "std sqrt(2)" in report.notes["bi"] and "bigru" not in report.notes
    bi, bigru = model.get_layer("bi"), model.get_layer("bigru")
    assert bi.merge_mode == "sum" and bigru.merge_mode == "concat"
    for wrapper, cls in ((bi, ku.layers.LSTM), (bigru, ku.layers.GRU)):
        assert type(wrapper.forward_layer) is cls and type(wrapper.backward_layer) is cls
        assert wrapper.backward_layer.go_backwards and not wrapper.forward_layer.go_backwards
    assert type(model.get_layer("td").layer) is ku.layers.Dense
    assert model.get_layer("head").get_layer("logits").readout
    assert not model.get_layer("encoder").get_layer("up").readout  # more layers follow it
    # Saves and loads (training is Keras' own through the wrappers; see the test above).
    x = normal((8, 6, 8), seed=5)
    path = str(tmp_path / "converted.keras")
    model.save(path)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(keras.saving.load_model(path)(x)),
                               keras.ops.convert_to_numpy(model(x)), rtol=1e-5, atol=1e-6)


def test_an_add_of_separate_paths_is_not_a_residual():
    inputs = keras.Input((8,))
    left, right = L.Dense(8, name="left")(inputs), L.Dense(8, name="right")(inputs)
    outputs = L.Add(name="sum")([left, right])
    _, report = ku.unit_scale(keras.Model(inputs, outputs), return_report=True)
    assert report.residuals == []
    assert ("sum", "Add") in [(name, cls) for name, cls, _ in report.kept]


def test_fixed_residual_tau_is_used_everywhere(converted):
    plain, _, _ = converted
    _, report = ku.unit_scale(plain, residual_tau=0.25, return_report=True)
    assert [tau for _, tau in report.residuals] == [0.25] * 4


@pytest.mark.parametrize("bad, match", [
    ("not a model", "`model` must be a keras.Model"),
    (keras.Sequential([L.Dense(2)]), "Sequential model without a known input shape"),
])
def test_bad_models_are_clear_errors(bad, match):
    with pytest.raises(ValueError, match=match):
        ku.unit_scale(bad)


def test_subclassed_model_is_a_clear_error():
    class Custom(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = L.Dense(2)

        def call(self, x):
            return self.dense(x)

    model = Custom()
    model(np.zeros((1, 3), "float32"))
    with pytest.raises(ValueError, match="subclassed"):
        ku.unit_scale(model)


@pytest.mark.parametrize("tau", [-1.0, "big", True])
def test_bad_residual_tau_names_the_argument(converted, tau):
    with pytest.raises(ValueError, match="`residual_tau` must be None or a non-negative"):
        ku.unit_scale(converted[0], residual_tau=tau)


@pytest.mark.parametrize("layer", ["split", "add"])
def test_residual_layers_round_trip(layer, tmp_path):
    inputs = keras.Input((4,))
    residual, skip = ku.layers.ResidualSplit(0.5)(inputs)
    outputs = ku.layers.ResidualAdd(0.5)([ku.layers.Dense(4)(residual), skip])
    model = keras.Model(inputs, outputs)
    config = model.get_layer(index=1 if layer == "split" else -1).get_config()
    assert config["tau"] == 0.5
    assert_keras_roundtrip(model, np.ones((2, 4), "float32"), tmp_path)


def test_residual_add_checks_its_inputs():
    with pytest.raises(ValueError, match=r"`inputs` of `ResidualAdd` must be a list"):
        ku.layers.ResidualAdd()(np.ones((2, 4), "float32"))
    with pytest.raises(ValueError, match="same shape"):
        ku.layers.ResidualAdd()([np.ones((2, 4), "float32"), np.ones((2, 3), "float32")])
    with pytest.raises(ValueError, match="`tau`"):
        ku.layers.ResidualSplit(-1.0)
