import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_unitscale as ku
from keras_unitscale import ops as uops
from keras_unitscale.backend import vjp
from keras_unitscale.models.backbones import LSTMBackbone, TransformerEncoderBackbone
from keras_unitscale.models.text_classifier import SequencePooling, TextClassifier
from keras_unitscale.preprocessors import TextClassifierPreprocessor
from keras_unitscale.tokenizers import JiebaTokenizer
from roundtrip import assert_config_roundtrip

POSITIVE = ["这本书很好", "质量很好", "很喜欢这本书", "好用推荐", "非常满意"]
NEGATIVE = ["质量太差了", "很失望", "不推荐这本书", "太差了", "非常不满意"]
TEXTS = (POSITIVE + NEGATIVE) * 4
LABELS = np.array(([1] * 5 + [0] * 5) * 4, dtype="int32")


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _classifier(backbone="lstm", **kwargs):
    tokenizer = JiebaTokenizer.from_corpus(TEXTS)
    preprocessor = TextClassifierPreprocessor(tokenizer, sequence_length=8)
    vocab = tokenizer.vocabulary_size()
    if backbone == "lstm":
        backbone = LSTMBackbone(vocab, hidden_dim=16)
    else:
        backbone = TransformerEncoderBackbone(
            vocab, num_layers=1, num_heads=2, hidden_dim=16, intermediate_dim=32,
            max_sequence_length=8,
        )
    kwargs.setdefault("num_classes", 2)
    return TextClassifier(backbone, preprocessor=preprocessor, **kwargs)


@pytest.fixture(scope="module")
def trained():
    keras.utils.set_random_seed(0)
    classifier = _classifier(dropout=0.1)
    history = classifier.fit(TEXTS, LABELS, batch_size=8, epochs=4, verbose=0,
                             validation_split=0.2)
    return classifier, history.history


def test_fits_raw_strings_and_the_loss_goes_down(trained):
    classifier, history = trained
    assert np.all(np.isfinite(history["loss"]))
    assert history["loss"][-1] < 0.9 * history["loss"][0], history["loss"]
    assert "accuracy" in history and len(history["val_accuracy"]) == 4
    logits = classifier.predict(["这本书很好", "太差了"], verbose=0)
    assert logits.shape == (2, 2)
    assert logits[0, 1] - logits[0, 0] > logits[1, 1] - logits[1, 0]


def test_evaluate_and_datasets_of_raw_strings(trained):
    classifier, _ = trained
    results = classifier.evaluate(TEXTS, LABELS, verbose=0, return_dict=True)
    assert set(results) == {"loss", "accuracy"}
    ds = tf.data.Dataset.from_tensor_slices((TEXTS, LABELS)).batch(16)
    from_dataset = classifier.evaluate(ds, verbose=0, return_dict=True)
    np.testing.assert_allclose(from_dataset["accuracy"], results["accuracy"])
    preds = classifier.predict(tf.data.Dataset.from_tensor_slices(TEXTS[:3]).batch(2), verbose=0)
    np.testing.assert_allclose(preds, classifier.predict(TEXTS[:3], verbose=0), atol=1e-5)


def test_keras_file_restores_model_preprocessor_and_vocabulary(trained, tmp_path):
    classifier, _ = trained
    path = str(tmp_path / "classifier.keras")
    classifier.save(path)
    restored = keras.saving.load_model(path)
    assert type(restored) is TextClassifier
    assert restored.preprocessor.tokenizer.get_vocabulary() == (
        classifier.preprocessor.tokenizer.get_vocabulary()
    )
    assert restored.preprocessor.sequence_length == 8
    np.testing.assert_allclose(
        restored.predict(TEXTS[:4], verbose=0), classifier.predict(TEXTS[:4], verbose=0),
        atol=1e-6,
    )
    # The restored model is compiled with our defaults.
    assert restored.compiled and isinstance(restored.loss, ku.losses.SparseCategoricalCrossentropy)
    assert isinstance(restored.optimizer, keras.optimizers.AdamW)


def test_config_roundtrip_and_compile_defaults():
    classifier = _classifier(pooling="max", dropout=0.2)
    clone = assert_config_roundtrip(classifier)
    assert (clone.num_classes, clone.pooling, clone.dropout) == (2, "max", 0.2)
    assert isinstance(classifier.optimizer, ku.optimizers.AdamW)
    assert float(_np(classifier.optimizer.learning_rate)) == pytest.approx(0.5)
    assert isinstance(classifier.loss, ku.losses.SparseCategoricalCrossentropy)
    assert classifier.output_dense.readout
    classifier.compile(learning_rate=3e-3)
    assert float(_np(classifier.optimizer.learning_rate)) == pytest.approx(3e-3)


def test_output_mult_scales_the_logits_forward_only(tmp_path):
    keras.utils.set_random_seed(3)
    plain = _classifier()
    boosted = _classifier(output_mult=4.0)
    boosted.set_weights(plain.get_weights())
    x, y = plain.preprocessor(TEXTS[:8], LABELS[:8])
    np.testing.assert_allclose(_np(boosted(x)), 4 * _np(plain(x)), rtol=1e-5, atol=1e-6)
    # The backward pass is not multiplied: the readout (its `Dense(readout=True,
    # output_mult=4)`, the one place the multiplier lives) gives the input, kernel and bias the
    # gradients of the plain readout.
    assert boosted.get_layer("logits").output_mult == 4.0
    pooled = np.random.default_rng(1).standard_normal((8, 16)).astype("float32")
    upstream = np.random.default_rng(0).standard_normal((8, 2)).astype("float32")
    grads = []
    for task in (plain, boosted):
        dense = task.get_layer("logits")
        _, pullback = vjp(lambda h, w, b, d=dense: uops.readout(h, w, b, mult=d.output_mult),
                          pooled, _np(dense.kernel), _np(dense.bias))
        grads.append([_np(g) for g in pullback(upstream)])
    for g_plain, g_boosted in zip(*grads, strict=True):
        np.testing.assert_allclose(g_boosted, g_plain, rtol=1e-6, atol=1e-7)
    _, pullback = vjp(lambda h: boosted.get_layer("logits")(h), pooled)  # the layer itself
    np.testing.assert_allclose(_np(pullback(upstream)[0]), grads[0][0], rtol=1e-6, atol=1e-7)
    clone = assert_config_roundtrip(boosted)
    assert clone.output_mult == 4.0
    path = str(tmp_path / "boosted.keras")
    boosted.save(path)
    np.testing.assert_allclose(
        _np(keras.saving.load_model(path).predict(TEXTS[:4], verbose=0)),
        _np(boosted.predict(TEXTS[:4], verbose=0)), atol=1e-6,
    )


def test_without_preprocessor_takes_token_ids(trained):
    classifier, _ = trained
    preprocessor = classifier.preprocessor
    x, y = preprocessor(TEXTS[:8], LABELS[:8])
    x = {k: _np(v) for k, v in x.items()}
    expected = classifier.predict(TEXTS[:8], verbose=0)
    classifier.preprocessor = None
    try:
        np.testing.assert_allclose(classifier.predict(x, verbose=0), expected, atol=1e-5)
        assert set(classifier.evaluate(x, _np(y), verbose=0, return_dict=True)) == {
            "loss", "accuracy"}
    finally:
        classifier.preprocessor = preprocessor


def test_transformer_classifier_with_first_token_pooling():
    classifier = _classifier("transformer", pooling="first")
    assert classifier.predict(TEXTS[:3], verbose=0).shape == (3, 2)


@pytest.mark.parametrize(
    "labels, message",
    [
        (np.array(["pos", "neg"] * 20), "integer class ids"),
        (LABELS.astype("float32"), "integer class ids"),
        (LABELS + 2, r"in \[0, 2\)"),
        (LABELS[:5], "same number"),
    ],
)
def test_bad_labels_raise(labels, message):
    classifier = _classifier()
    with pytest.raises(ValueError, match=message):
        classifier.fit(TEXTS, labels, verbose=0)
    with pytest.raises(ValueError, match=message):
        classifier.evaluate(TEXTS, labels, verbose=0)


def test_bad_inputs_raise():
    classifier = _classifier()
    with pytest.raises(ValueError, match="empty"):
        classifier.predict([], verbose=0)
    with pytest.raises(ValueError, match="empty"):
        classifier.fit([], [], verbose=0)
    with pytest.raises(ValueError, match="preprocess"):
        classifier(["这本书很好"])
    string_labels = tf.data.Dataset.from_tensor_slices((TEXTS, ["a"] * len(TEXTS))).batch(4)
    with pytest.raises(ValueError, match="integer class ids"):
        classifier.fit(string_labels, verbose=0)
    with pytest.raises(ValueError, match="batch_size"):
        classifier.fit(string_labels, batch_size=4, verbose=0)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda b: TextClassifier(b, num_classes=0), "num_classes"),
        (lambda b: TextClassifier(b, num_classes=2, pooling="sum"), "pooling"),
        (lambda b: TextClassifier(b, num_classes=2, dropout=-0.1), "dropout"),
        (lambda b: TextClassifier(b, num_classes=2, output_mult=0), "output_mult"),
        (lambda b: TextClassifier(keras.Sequential([keras.layers.Dense(2)]), 2), "backbone"),
    ],
)
def test_bad_arguments(make, message):
    with pytest.raises(ValueError, match=message):
        make(LSTMBackbone(20, hidden_dim=8))


def test_pooling_values_and_mean_gradient():
    hidden = np.arange(12, dtype="float32").reshape(2, 3, 2)
    mask = np.array([[1, 1, 0], [1, 1, 1]], "int32")
    expected = {
        "mean": [[1.0, 2.0], [8.0, 9.0]],
        "max": [[2.0, 3.0], [10.0, 11.0]],
        "first": [[0.0, 1.0], [6.0, 7.0]],
        "last": [[2.0, 3.0], [10.0, 11.0]],
    }
    for pooling, values in expected.items():
        np.testing.assert_allclose(_np(SequencePooling(pooling)(hidden, mask)), values)
    # Mean pooling passes the pooled gradient to every real token (unit), none to padding.
    pool = SequencePooling("mean")
    _, pullback = vjp(lambda h: pool(h, mask), hidden)
    grad = _np(pullback(np.ones((2, 2), "float32"))[0])
    np.testing.assert_allclose(grad, mask[:, :, None] * np.ones((2, 3, 2)))


def test_scales_near_unit_at_initialisation():
    """Token ids (64 x 32 of a 256-token vocabulary) through an LSTM classifier of width 128,
    under the task's own loss. Predictions, each within 0.1 (15% for the logits):
    - the bidirectional LSTM's output is unit (two unit LSTMs side by side);
    - the logit gradient is unit (the cross-entropy's scale) and so is the gradient the
      readout passes back (`fan_out ** -0.5`), which mean pooling hands to every token
      unchanged, so the LSTM's output gradient is unit too;
    - the logits are the readout's `1 / fan_in` times a sum of `fan_in` products: std
      `std(pooled) / sqrt(128)`, small (u-muP).
    A doubled LSTM output scale, a dropped loss or readout scale each fail one of these."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 256, (64, 32)).astype("int32")
    labels = rng.integers(0, 2, (64,)).astype("int32")
    classifier = TextClassifier(LSTMBackbone(256, hidden_dim=128), num_classes=2)
    table = classifier.scale_report({"token_ids": ids, "padding_mask": np.ones_like(ids)}, labels)
    rows = {(r["layer"].split("/")[-1], r["direction"]): r["std"] for r in table}
    # The backbone's own name depends on how many were built before in this process.
    assert {"pooling", "logits", "bidirectional_0"} <= {name for name, _ in rows}, rows
    for key in (("bidirectional_0", "forward"), ("bidirectional_0", "backward"),
                ("logits", "backward")):
        assert abs(rows[key] - 1) <= 0.1, (key, rows[key])
    want = rows[("pooling", "forward")] / 128**0.5
    assert abs(rows[("logits", "forward")] / want - 1) <= 0.15, (rows[("logits", "forward")], want)


def test_inputs_as_users_give_them(trained):
    # Labels (and weights) as Python lists; one string to predict is a batch of one.
    classifier, _ = trained
    as_list = classifier.evaluate(TEXTS, LABELS.tolist(), verbose=0, return_dict=True)
    as_array = classifier.evaluate(TEXTS, LABELS, verbose=0, return_dict=True)
    assert as_list == pytest.approx(as_array)
    history = classifier.fit(TEXTS[:8], LABELS[:8].tolist(), sample_weight=[1.0] * 8,
                             validation_data=(TEXTS[8:16], LABELS[8:16].tolist()),
                             batch_size=8, epochs=1, verbose=0)
    assert np.isfinite(history.history["val_loss"][0])
    one = classifier.predict("这本书很好", verbose=0)
    both = classifier.predict(["这本书很好", "太差了"], verbose=0)
    assert one.shape == (1, 2)
    np.testing.assert_allclose(one[0], both[0], rtol=1e-5, atol=1e-6)


def test_label_names_are_kept_and_checked(tmp_path):
    classifier = _classifier(label_names=["negative", "positive"])
    assert classifier.num_classes == 2
    clone = TextClassifier.from_config(classifier.get_config())
    assert clone.label_names == ["negative", "positive"]
    labels = classifier.predict_labels(["这本书很好", "太差了"], verbose=0)
    assert set(labels) <= {"negative", "positive"} and len(labels) == 2
    classifier.save_to_preset(str(tmp_path / "preset"))
    loaded = TextClassifier.from_preset(str(tmp_path / "preset"))
    assert loaded.label_names == ["negative", "positive"]
    assert loaded.predict_labels(["这本书很好", "太差了"], verbose=0) == labels
    for bad in ("ab", ["a", "a"], ["a", ""], ["a", "b", "c"]):
        with pytest.raises(ValueError, match="`label_names`"):
            _classifier(label_names=bad)


def test_presets_saved_with_names_in_their_metadata_only_get_them():
    # zh_sentiment_lstm predates label_names in the task config.
    classifier = TextClassifier.from_preset("zh_sentiment_lstm")
    assert classifier.label_names == ["negative", "positive"]
    assert classifier.predict_labels(["质量很好，物流也快", "太差了，不推荐"], verbose=0) == [
        "positive", "negative"
    ]
