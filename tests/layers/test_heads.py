"""LMHead: the u-muP readout, tied or untied, with its output multiplier."""

import keras
import numpy as np
import pytest

from keras_unitscale.layers import Embedding
from keras_unitscale.layers import LMHead


def _hidden(n=256, dim=64):
    return np.random.default_rng(0).standard_normal((n, dim)).astype("float32")


def test_untied_readout_scale_and_multiplier():
    x = _hidden()
    head = LMHead(1000)
    logits = keras.ops.convert_to_numpy(head(x))
    # u-muP readout: 1 / fan_in, so unit inputs and weights give std fan_in ** -0.5.
    assert abs(logits.std() * 64**0.5 - 1) < 0.1
    doubled = LMHead(1000, output_mult=2.0)
    doubled.build(x.shape)
    doubled.kernel.assign(head.kernel)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(doubled(x)), 2 * logits, rtol=1e-5)


def test_tied_head_reads_the_embedding_table():
    embedding = Embedding(100, 64)
    embedding.build()
    head = LMHead(100, embedding=embedding)
    x = _hidden(8)
    expected = x @ keras.ops.convert_to_numpy(embedding.embeddings).T / 64
    np.testing.assert_allclose(keras.ops.convert_to_numpy(head(x)), expected, rtol=1e-4,
                               atol=1e-6)
    assert head.weights == [] and head.get_config()["tied"] is True


def test_bad_arguments():
    with pytest.raises(ValueError, match="input_dim == vocabulary_size"):
        LMHead(50, embedding=Embedding(40, 8))
    for mult in (0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="output_mult"):
            LMHead(50, output_mult=mult)
    with pytest.raises(ValueError, match="vocabulary_size"):
        LMHead(0)


def test_old_import_path_and_saved_name(tmp_path):
    # Moved from keras_unitscale.models.lm_head: the old path is the same class, and the
    # registered name that saved models and presets hold is unchanged.
    from keras_unitscale.models.lm_head import LMHead as old

    assert old is LMHead
    assert keras.saving.get_registered_name(LMHead) == "keras_unitscale>LMHead"
    inputs = keras.Input((3, 8))
    model = keras.Model(inputs, LMHead(20, output_mult=2.0)(inputs))
    path = str(tmp_path / "head.keras")
    model.save(path)
    x = _hidden(6, 8).reshape(2, 3, 8)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(keras.saving.load_model(path)(x)),
                               keras.ops.convert_to_numpy(model(x)), rtol=1e-6)


def test_moved_heads_keep_their_old_paths_and_saved_names():
    # SequencePooling and OutputMultiplier moved from keras_unitscale.models.text_classifier.
    from keras_unitscale import layers
    from keras_unitscale.models import text_classifier

    for name in ("SequencePooling", "OutputMultiplier"):
        assert getattr(text_classifier, name) is getattr(layers, name)
        assert keras.saving.get_registered_name(getattr(layers, name)) == f"keras_unitscale>{name}"
