import keras
import numpy as np
import pytest

import keras_unitscale as ku
from keras_unitscale.models import DEFAULT_LEARNING_RATE, UnitScaledModel


def _model(cls=UnitScaledModel):
    inputs = keras.Input((8,))
    hidden = ku.layers.Dense(16, activation="gelu", name="hidden")(inputs)
    return cls(inputs, ku.layers.Dense(3, readout=True, name="head")(hidden))


def _data(n=32):
    x = np.random.default_rng(0).standard_normal((n, 8)).astype("float32")
    return x, (x[:, 0] > 0).astype("int32") + (x[:, 1] > 1).astype("int32")


def _lr(model):
    return float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))


def test_compile_defaults():
    model = _model()
    model.compile()
    assert isinstance(model.optimizer, ku.optimizers.AdamW)
    assert _lr(model) == pytest.approx(DEFAULT_LEARNING_RATE) == pytest.approx(0.5)
    assert model.optimizer.weight_decay == 0.0
    assert isinstance(model.loss, ku.losses.SparseCategoricalCrossentropy)
    history = model.fit(*_data(), epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))


def test_learning_rate_argument():
    model = _model()
    model.compile(learning_rate=3e-3)
    assert _lr(model) == pytest.approx(3e-3)
    model.compile(optimizer="adam", learning_rate=5e-4)
    assert isinstance(model.optimizer, keras.optimizers.Adam) and _lr(model) == pytest.approx(5e-4)
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    assert _lr(model) == pytest.approx(0.1)


def test_learning_rate_schedule():
    model = _model()
    schedule = keras.optimizers.schedules.CosineDecay(3e-2, decay_steps=4)
    model.compile(learning_rate=schedule)
    assert model.optimizer._learning_rate is schedule
    before = _lr(model)
    model.fit(*_data(), epochs=1, batch_size=8, verbose=0)
    assert before == pytest.approx(3e-2) and _lr(model) < before  # it decays with the steps


def test_learning_rate_with_an_optimizer_instance_raises():
    with pytest.raises(ValueError, match="learning_rate"):
        _model().compile(optimizer=keras.optimizers.Adam(1e-3), learning_rate=1e-2)
    for bad in (0, -1e-3, "fast", True):
        with pytest.raises(ValueError, match="`learning_rate` must be a positive number"):
            _model().compile(learning_rate=bad)


def test_no_loss_scaling_under_mixed_float16():
    keras.config.set_dtype_policy("mixed_float16")
    ours = _model()
    ours.compile()
    assert not isinstance(ours.optimizer, keras.optimizers.LossScaleOptimizer)
    # The converse: Keras wraps a plain model's optimizer.
    plain = _model(keras.Model)
    plain.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    assert isinstance(plain.optimizer, keras.optimizers.LossScaleOptimizer)
    # Asked for explicitly, loss scaling is still available.
    ours.compile(auto_scale_loss=True)
    assert isinstance(ours.optimizer, keras.optimizers.LossScaleOptimizer)
    ours.compile()
    assert np.isfinite(ours.fit(*_data(), epochs=1, verbose=0).history["loss"][0])


def test_scale_report_rows():
    model = _model()
    model.compile()
    x, y = _data(64)
    table = model.scale_report(x, y)
    assert [(r["layer"], r["direction"]) for r in table] == [
        ("hidden", "forward"), ("hidden", "backward"), ("head", "forward"), ("head", "backward"),
    ]
    hidden_forward = table[0]
    assert 0.5 < hidden_forward["std"] < 2.0
    assert all(np.isfinite(r["std"]) for r in table)


def test_keras_roundtrip(tmp_path):
    model = _model()
    model.compile()
    x, _ = _data()
    path = str(tmp_path / "model.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    assert isinstance(restored, UnitScaledModel) and restored.compiled
    np.testing.assert_allclose(restored.predict(x, verbose=0), model.predict(x, verbose=0))
