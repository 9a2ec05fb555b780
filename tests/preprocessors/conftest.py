"""Shared helpers for the preprocessor tests: real text, and a `.keras` file round trip."""

import keras
import numpy as np
import pytest

from keras_unitscale.datasets import load_chinese_sentiment


@keras.saving.register_keras_serializable(package="keras_unitscale_tests")
class PreprocessorHolder(keras.Model):
    """The smallest model that carries a preprocessor, as a task does, so it can be saved."""

    def __init__(self, preprocessor, **kwargs):
        super().__init__(**kwargs)
        self.preprocessor = preprocessor
        self.dense = keras.layers.Dense(1)

    def build(self, input_shape):
        self.dense.build(input_shape)

    def call(self, x):
        return self.dense(x)

    def get_config(self):
        return {**super().get_config(), "preprocessor": keras.layers.serialize(self.preprocessor)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["preprocessor"] = keras.layers.deserialize(config["preprocessor"])
        return cls(**config)


@pytest.fixture()
def keras_file_round_trip(tmp_path):
    """Saves `preprocessor` inside a `.keras` file, loads it back, returns the copy."""

    def round_trip(preprocessor):
        model = PreprocessorHolder(preprocessor)
        model(np.zeros((1, 2), "float32"))
        path = str(tmp_path / "model.keras")
        model.save(path)
        return keras.saving.load_model(path).preprocessor

    return round_trip


@pytest.fixture(scope="session")
def reviews():
    (x_train, y_train), _, _ = load_chinese_sentiment()
    return [str(t) for t in x_train[:600]], y_train[:600]


@pytest.fixture(scope="session")
def numpy_tree():
    """Converts a nest of backend / TF tensors to NumPy arrays."""
    return lambda x: keras.tree.map_structure(
        lambda t: np.asarray(keras.ops.convert_to_numpy(t)), x
    )
