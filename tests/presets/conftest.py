"""Presets of the tiny task models, saved once per session."""

import keras
import pytest

from presets.tiny_models import BUILDERS, outputs


@pytest.fixture(scope="session")
def saved_presets(tmp_path_factory):
    """`{kind: (preset directory, outputs before saving)}` for the three tiny tasks."""
    from keras_unitscale.presets import save_preset

    root = tmp_path_factory.mktemp("presets")
    saved = {}
    for kind, build in BUILDERS.items():
        keras.utils.set_random_seed(1)
        task = build()
        path = root / kind
        save_preset(task, path, metadata={"label_names": ["negative", "positive"]}
                    if kind == "classifier" else None)
        saved[kind] = (str(path), outputs(task, kind))
    return saved
