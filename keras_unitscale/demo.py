"""The main job of `make demo`: the model zoo on built-in data, end to end.

1. Unit scaling at a glance: the same small network built from `keras_unitscale.layers` and
   from `keras.layers`, with the std of every layer's activations and gradients at
   initialisation side by side.
2. The trained presets, loaded by name: classify Chinese reviews (`zh_sentiment_lstm`),
   translate Chinese to English (`zh_en_translator`), continue a review (`zh_reviews_gpt`).
3. Fine-tune the classifier briefly on built-in reviews it was not trained on (the
   validation split; Keras' progress bar), evaluating on the test split before and after.
4. Export the fine-tuned classifier to a TF Serving SavedModel, reload it with TensorFlow
   alone and check that it gives the Keras model's probabilities.

`main(presets=...)` takes other preset names or directories for each role, which is how the
tests run the whole job on tiny models in seconds.
"""

import os
import tempfile
import time

import keras
import numpy as np

import keras_unitscale as ku

PRESETS = {
    "classifier": "zh_sentiment_lstm",
    "translator": "zh_en_translator",
    "generator": "zh_reviews_gpt",
}
REVIEWS = ["这本书写得很好，值得一读。", "质量太差了，用了两天就坏了。", "酒店位置不错，就是房间有点小。"]
SENTENCES = ["我喜欢喝茶。", "今天天气很好。", "这本书很有意思。"]
PROMPTS = ["这本书", "房间"]
VOCAB, LENGTH, WIDTH, CLASSES, DEPTH = 512, 32, 128, 4, 4


# 1. Unit scaling at a glance -----------------------------------------------------------------
def build_model(unit_scaled):
    """Embedding -> DEPTH residual MLP blocks -> norm -> pooled -> Dense -> readout."""
    L = ku.layers if unit_scaled else keras.layers
    inputs = keras.Input((LENGTH,), dtype="int32", name="token_ids")
    x = L.Embedding(VOCAB, WIDTH, name="embedding")(inputs)
    taus = [t for _, t in ku.ops.transformer_residual_taus(DEPTH)]
    for i in range(DEPTH):
        if unit_scaled:
            x = ku.layers.Residual(ku.layers.MLP(2 * WIDTH), tau=taus[i], name=f"block_{i}")(x)
        else:
            h = keras.layers.Dense(2 * WIDTH, activation="gelu", name=f"block_{i}_up")(x)
            h = keras.layers.Dense(WIDTH, name=f"block_{i}_down")(h)
            x = keras.layers.Add(name=f"block_{i}")([x, h])
    x = L.LayerNormalization(name="norm")(x)
    if unit_scaled:  # mean forward, the pooled gradient to every token backward
        from keras_unitscale.models.text_classifier import SequencePooling

        x = SequencePooling("mean", name="pool")(x, keras.ops.ones_like(inputs))
    else:
        x = keras.layers.GlobalAveragePooling1D(name="pool")(x)
    x = L.Dense(WIDTH, activation="gelu", name="hidden")(x)
    if unit_scaled:
        outputs = ku.layers.Dense(CLASSES, readout=True, name="logits")(x)
        return ku.models.UnitScaledModel(inputs, outputs, name="unit_scaled")
    return keras.Model(inputs, keras.layers.Dense(CLASSES, name="logits")(x), name="plain")


def scale_comparison(batch=256, seed=0):
    """Per-layer forward/backward std of both models at initialisation, as text."""
    from keras_unitscale.analysis import track_scales

    rng = np.random.default_rng(seed)
    x = rng.integers(1, VOCAB, (batch, LENGTH)).astype("int32")
    y = rng.integers(0, CLASSES, (batch,)).astype("int32")
    keras.utils.set_random_seed(seed)
    ours = track_scales(build_model(True), x, y, loss=ku.losses.SparseCategoricalCrossentropy())
    plain = track_scales(
        build_model(False), x, y,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    lines = [f"{'layer':<12}{'direction':<11}{'unit-scaled std':>16}{'keras std':>12}"]
    plain_rows = {(r["layer"].split("/")[0], r["direction"]): r["std"] for r in plain}
    for row in ours:
        name = row["layer"].split("/")[0]
        other = plain_rows.get((name, row["direction"]))
        other = "-" if other is None else f"{other:.3g}"
        lines.append(f"{name:<12}{row['direction']:<11}{row['std']:>16.3g}{other:>12}")
    return "\n".join(lines)


# 2. Presets by name --------------------------------------------------------------------------
def classify(classifier, texts):
    probabilities = keras.ops.convert_to_numpy(
        keras.ops.softmax(classifier.predict(texts, verbose=0))
    )
    names = ["negative", "positive"]
    return [(names[int(p.argmax())], float(p.max())) for p in probabilities]


# 3. Fine-tuning ------------------------------------------------------------------------------
def fine_tune(classifier, train_size, epochs, test_size=None):
    """A short fine-tune on validation reviews (the preset trained on the training split and
    never saw them); accuracy on the first `test_size` test reviews (all by default) before
    and after."""
    from keras_unitscale.datasets import load_chinese_sentiment

    _, (x_new, y_new), (x_test, y_test) = load_chinese_sentiment()
    x_train, y_train = list(x_new[:train_size]), y_new[:train_size]
    x_test, y_test = list(x_test[:test_size]), y_test[:test_size]
    before = classifier.evaluate(x_test, y_test, batch_size=128, verbose=0, return_dict=True)
    # A small base rate (u-muP's AdamW; the default is 0.5): the preset is trained already.
    # Its hidden weights (fan-in 128 to 256) step by about 1e-3, as a plain Keras fine-tune.
    classifier.compile(learning_rate=2**-6)
    classifier.fit(x_train, y_train, batch_size=64, epochs=epochs, verbose=1)
    after = classifier.evaluate(x_test, y_test, batch_size=128, verbose=0, return_dict=True)
    return before["accuracy"], after["accuracy"], len(x_test)


# 4. Export and reload ------------------------------------------------------------------------
def export_and_reload(classifier, texts, directory):
    """Exports for TF Serving, reloads with `tf.saved_model.load`, compares probabilities."""
    import tensorflow as tf

    from keras_unitscale import serving

    version = classifier.export(directory, version=1, overwrite=True)
    loaded = tf.saved_model.load(version)
    signature = loaded.signatures["serving_default"]
    # Raw text: the export segments it (jieba in TensorFlow ops) and looks the words up.
    inputs = serving.prepare_inputs(classifier, texts)
    outputs = signature(**{name: tf.constant(value) for name, value in inputs.items()})
    served = outputs["probabilities"].numpy()
    expected = keras.ops.convert_to_numpy(keras.ops.softmax(classifier.predict(texts, verbose=0)))
    return sorted(loaded.signatures), served, float(np.max(np.abs(served - expected)))


def main(epochs=1, train_size=2000, presets=None, export_dir=None, test_size=None):
    """Runs the demo; returns the fine-tuned test accuracy and the export's largest error.
    `test_size` caps the test reviews evaluated (all of them by default)."""
    from keras_unitscale.tokenizers import tidy_detokenized

    presets = {**PRESETS, **(presets or {})}
    start = time.time()
    print(f"keras-unitscale {ku.__version__} on Keras {keras.__version__}, "
          f"backend {keras.backend.backend()}\n")

    print("1. Scales at initialisation (one batch; backward = gradient of the loss):")
    print(scale_comparison())

    print("\n2. Presets, loaded by name:")
    for name, description in ku.list_presets().items():
        print(f"  {name:<26}{description}")
    classifier = ku.models.TextClassifier.from_preset(presets["classifier"])
    print(f"\n  {presets['classifier']}: sentiment of reviews")
    for text, (label, p) in zip(REVIEWS, classify(classifier, REVIEWS)):
        print(f"    {label:<9}{p:.2f}  {text}")
    translator = ku.models.Seq2SeqLM.from_preset(presets["translator"])
    print(f"\n  {presets['translator']}: Chinese -> English (greedy)")
    for text, translation in zip(SENTENCES, translator.generate(SENTENCES)):
        print(f"    {text} -> {tidy_detokenized(translation)}")
    generator = ku.models.CausalLM.from_preset(presets["generator"])
    print(f"\n  {presets['generator']}: continuations (greedy)")
    length = min(32, generator.preprocessor.sequence_length)
    for text in generator.generate(PROMPTS, max_length=length):
        print(f"    {text}")

    print(f"\n3. Fine-tuning {presets['classifier']} on up to {train_size} reviews it has not "
          "seen (the validation split):")
    before, after, n = fine_tune(classifier, train_size, epochs, test_size)
    print(f"  test accuracy on {n} reviews: {before:.4f} before, {after:.4f} after")

    print("\n4. Export for TF Serving, reload with TensorFlow alone:")
    directory = export_dir or tempfile.mkdtemp(prefix="keras_unitscale_demo_")
    signatures, served, error = export_and_reload(classifier, REVIEWS, directory)
    print(f"  {os.path.join(directory, '1')}: signatures {', '.join(signatures)}")
    for text, p in zip(REVIEWS, served):
        print(f"    P(positive) {p[1]:.2f}  {text}")
    print(f"  largest difference from the Keras model: {error:.1e}")
    print(f"\nDone in {time.time() - start:.0f} s.")
    return after, error
