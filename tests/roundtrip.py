"""`.keras` save/load and config round trips, shared by the layer and model tests."""

import keras
import numpy as np


def assert_keras_roundtrip(layer, inputs, tmp_path, **call_kwargs):
    """Wraps `layer` in a functional model, saves it as `.keras`, reloads, compares outputs."""
    inputs = inputs if isinstance(inputs, (list, tuple)) else [inputs]
    symbolic = [keras.Input(shape=x.shape[1:], dtype=str(x.dtype)) for x in inputs]
    outputs = layer(*symbolic, **call_kwargs)
    model = keras.Model(symbolic, outputs)
    expected = model(inputs if len(inputs) > 1 else inputs[0])
    path = str(tmp_path / "model.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    actual = restored(inputs if len(inputs) > 1 else inputs[0])
    for e, a in zip(keras.tree.flatten(expected), keras.tree.flatten(actual)):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(e), keras.ops.convert_to_numpy(a))
    return restored


def assert_config_roundtrip(layer):
    config = layer.get_config()
    clone = layer.__class__.from_config(config)
    assert clone.get_config() == config
    return clone
