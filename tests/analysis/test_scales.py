import json

import keras
import numpy as np
import pytest

import keras_unitscale as ku
from keras_unitscale.analysis import ScaleTable, ScaleTracker, plot_scales, track_scales

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def normal(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype("float32")


# One batch and width throughout: on JAX, eager ops compile once per shape.
BATCH, WIDTH = 64, 64


def unit_model(width=WIDTH):
    inputs = keras.Input((128,))
    h = ku.layers.Dense(width, activation="gelu", name="hidden_1")(inputs)
    h = ku.layers.Dense(width, activation="gelu", name="hidden_2")(h)
    outputs = ku.layers.Dense(10, readout=True, name="head")(h)
    return keras.Model(inputs, outputs)


def test_one_row_per_layer_and_direction_near_unit():
    table = track_scales(unit_model(), normal((BATCH, 128)))
    assert isinstance(table, ScaleTable)
    assert [(r["layer"], r["class"], r["direction"]) for r in table] == [
        (name, "Dense", direction)
        for name in ("hidden_1", "hidden_2", "head")
        for direction in ("forward", "backward")
    ]
    # Unit scaling: everything near 1 except the readout's output (std fan_in ** -0.5).
    for row in table:
        if (row["layer"], row["direction"]) == ("head", "forward"):
            assert 0.5 * WIDTH**-0.5 < row["std"] < 2 * WIDTH**-0.5
        else:
            assert 0.75 < row["std"] < 1.33, row
        assert row["fp16_underflow"] == 0 and row["fp16_overflow"] == 0
        assert row["e4m3_overflow"] == 0 and row["e5m2_overflow"] == 0
    text = table.to_text()
    assert text.splitlines()[0].split()[:5] == ["layer", "class", "direction", "std", "abs_max"]
    assert len(text.splitlines()) == len(table) + 1 and str(table) == text
    assert len(table.select(direction="backward")) == 3


def test_values_and_gradients_are_the_layer_outputs_and_their_gradients():
    # Plain Keras layers, to compare with: outputs and gradients computed by hand.
    x = normal((64, 8))
    model = keras.Sequential(
        [keras.Input((8,)), keras.layers.Dense(16, name="a"), keras.layers.Dense(4, name="b")]
    )
    y = normal((64, 4), seed=1)
    model.compile(loss="mse")
    table = track_scales(model, x, y)
    w_a, b_a, w_b, b_b = [keras.ops.convert_to_numpy(w) for w in model.weights]
    a = x @ w_a + b_a
    b = a @ w_b + b_b
    g_b = 2 * (b - y) / b.size  # mean squared error
    g_a = g_b @ w_b.T
    expected = {
        ("a", "forward"): a,
        ("a", "backward"): g_a,
        ("b", "forward"): b,
        ("b", "backward"): g_b,
    }
    assert len(table) == 4
    for row in table:
        ref = expected[(row["layer"], row["direction"])]
        np.testing.assert_allclose(row["std"], ref.std(), rtol=1e-4)
        np.testing.assert_allclose(row["abs_max"], np.abs(ref).max(), rtol=1e-4)
    # An explicit loss instead of the compiled one: sum of squares, gradient 2 (b - y).
    table = track_scales(model, x, y, loss=lambda t, p: keras.ops.sum((p - t) ** 2))
    np.testing.assert_allclose(table[-1]["std"], (2 * (b - y)).std(), rtol=1e-4)


def test_format_fractions():
    x = np.array([[0.0, 1e-9, 5e-4, 1.0, 1000.0, 1e5]], "float32")
    model = keras.Sequential([keras.Input((6,)), keras.layers.Rescaling(1.0, name="id")])
    row = track_scales(model, x)[0]
    assert row["direction"] == "forward"
    expected = {"fp16": (1, 1), "e4m3": (2, 2), "e5m2": (1, 1)}  # (underflows, overflows)
    for fmt, (under, over) in expected.items():
        assert row[f"{fmt}_underflow"] == pytest.approx(under / 6), fmt
        assert row[f"{fmt}_overflow"] == pytest.approx(over / 6), fmt


def test_plain_keras_model_for_comparison_and_nested_models():
    # The same network from keras.layers with a mean loss: its gradients sit far below unit
    # (about 1 / batch), where E4M3 flushes a large share of them (about a quarter at this
    # batch size); the unit-scaled model with its unit-scaled loss keeps them near 1.
    x, y = normal((BATCH, 128)), np.random.default_rng(2).integers(0, 10, BATCH)
    inputs = keras.Input((128,))
    h = keras.layers.Dense(WIDTH, activation="gelu", name="hidden_1")(inputs)
    backbone = keras.Model(inputs, h, name="backbone")
    outer_in = keras.Input((128,))
    plain = keras.Model(outer_in, keras.layers.Dense(10, name="head")(backbone(outer_in)))
    plain.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    table = track_scales(plain, x, y)
    assert [r["layer"] for r in table.select(direction="forward")] == ["backbone/hidden_1", "head"]
    grad = table.select(layer="backbone/hidden_1", direction="backward")[0]
    assert grad["std"] < 1e-2 and grad["e4m3_underflow"] > 0.15

    unit = unit_model()
    unit.compile(loss=ku.losses.SparseCategoricalCrossentropy())
    unit_grad = track_scales(unit, x, y).select(layer="hidden_1", direction="backward")[0]
    assert unit_grad["e4m3_underflow"] < 0.01 and unit_grad["std"] > 0.1


def test_errors():
    model = unit_model()
    x = normal((BATCH, 128))
    with pytest.raises(ValueError, match="compiled loss"):
        track_scales(model, x, np.zeros((BATCH,), "int32"))
    with pytest.raises(ValueError, match="needs `y`"):
        track_scales(model, x, loss="mse")

    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(2)

        def call(self, x):
            return self.dense(x)

    with pytest.raises(ValueError, match="Functional or Sequential"):
        track_scales(Subclassed(), x)


def test_plot_is_a_png(tmp_path):
    table = track_scales(unit_model(), normal((BATCH, 128)))
    path = plot_scales(table, str(tmp_path / "scales.png"), title="unit-scaled")
    with open(path, "rb") as f:
        assert f.read(8) == PNG_MAGIC
    with pytest.raises(ValueError, match="empty"):
        plot_scales(ScaleTable(), str(tmp_path / "empty.png"))


def test_tracker_logs_every_n_steps(tmp_path):
    model = unit_model()
    model.compile(optimizer="sgd", loss=ku.losses.SparseCategoricalCrossentropy())
    x, y = normal((BATCH, 128)), np.random.default_rng(3).integers(0, 10, BATCH)
    tracker = ScaleTracker(x, y, every_n_steps=2, log_dir=str(tmp_path), plot=True)
    model.fit(x, y, batch_size=BATCH // 4, epochs=1, callbacks=[tracker], verbose=0)
    assert sorted({r["step"] for r in tracker.history}) == [0, 2, 4]
    assert len(tracker.history) == 3 * 6
    lines = (tmp_path / "scales.jsonl").read_text().splitlines()
    assert len(lines) == 18 and json.loads(lines[-1])["step"] == 4
    assert (tmp_path / "scales_step_4.txt").read_text().startswith("step")
    assert (tmp_path / "scales_step_2.png").read_bytes()[:8] == PNG_MAGIC
    # The history plots as its last step.
    assert plot_scales(tracker.history, str(tmp_path / "last.png"))
    with pytest.raises(ValueError, match="every_n_steps"):
        ScaleTracker(x, every_n_steps=0)
    with pytest.raises(ValueError, match="log_dir"):
        ScaleTracker(x, plot=True)
