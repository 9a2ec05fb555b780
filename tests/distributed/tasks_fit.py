"""Every task's `fit` on raw strings under a strategy equals the same `fit` on one device.

Run as `python tests/distributed/tasks_fit.py BACKEND` (tensorflow or jax); prints one
`RESULT {...}` line. Each task (TextClassifier with an LSTM and with a transformer backbone,
Seq2SeqLM, CausalLM) is built twice with the same initial weights: once under
`tf.distribute.MirroredStrategy` (TensorFlow) or `keras.distribution.DataParallel` (JAX) over
`NUM_DEVICES` virtual CPU devices, once on a single device. Both fit the same raw strings in
the same order (no shuffling, no dropout) through the task's own preprocessing; the report
holds the fit losses of both and the largest relative weight difference afterwards.
"""

import os
import sys

BACKEND = sys.argv[1] if len(sys.argv) > 1 else "tensorflow"
NUM_DEVICES = 2
os.environ["KERAS_BACKEND"] = BACKEND
if BACKEND == "jax":
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "")
        + f" --xla_force_host_platform_device_count={NUM_DEVICES}"
        + " --xla_backend_optimization_level=0"
    ).strip()
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common as C  # noqa: E402
import tensorflow as tf  # noqa: E402

if BACKEND == "tensorflow":
    _cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        _cpu, [tf.config.LogicalDeviceConfiguration()] * NUM_DEVICES
    )

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_unitscale.models import CausalLM, Seq2SeqBackbone, Seq2SeqLM  # noqa: E402
from keras_unitscale.models.backbones import (  # noqa: E402
    LSTMBackbone,
    TransformerDecoderBackbone,
    TransformerEncoderBackbone,
)
from keras_unitscale.models.text_classifier import TextClassifier  # noqa: E402
from keras_unitscale.preprocessors import (  # noqa: E402
    CausalLMPreprocessor,
    Seq2SeqLMPreprocessor,
    TextClassifierPreprocessor,
)
from keras_unitscale.tokenizers import CharacterTokenizer, JiebaTokenizer  # noqa: E402

ZH = ["这本书很好", "质量太差了", "很喜欢这本书", "很失望", "我们去学校", "猫很好吗"] * 4
EN = ["the book is good", "bad", "i like it", "sad", "we go to school", "cats?"] * 4
LABELS = np.array([1, 0, 1, 0, 1, 1] * 4, "int32")
BATCH, EPOCHS = 8, 2


def classifier(kind):
    tokenizer = JiebaTokenizer.from_corpus(ZH)
    vocab = tokenizer.vocabulary_size()
    if kind == "lstm":
        backbone = LSTMBackbone(vocab, hidden_dim=16)
    else:
        backbone = TransformerEncoderBackbone(
            vocab, num_layers=1, num_heads=2, hidden_dim=16, intermediate_dim=32,
            max_sequence_length=8,
        )
    preprocessor = TextClassifierPreprocessor(tokenizer, sequence_length=8)
    return TextClassifier(backbone, num_classes=2, preprocessor=preprocessor), (ZH, LABELS)


def translator():
    preprocessor = Seq2SeqLMPreprocessor(
        CharacterTokenizer.from_corpus(ZH), CharacterTokenizer.from_corpus(EN), 8, 18
    )
    backbone = Seq2SeqBackbone(
        preprocessor.tokenizer.vocabulary_size(), num_layers=1, num_heads=2, hidden_dim=16,
        intermediate_dim=32, max_sequence_length=20,
        decoder_vocabulary_size=preprocessor.decoder_tokenizer.vocabulary_size(),
    )
    return Seq2SeqLM(backbone, preprocessor), ({"encoder_text": ZH, "decoder_text": EN}, None)


def language_model():
    preprocessor = CausalLMPreprocessor(CharacterTokenizer.from_corpus(ZH), sequence_length=10)
    backbone = TransformerDecoderBackbone(
        preprocessor.tokenizer.vocabulary_size(), num_layers=1, num_heads=2, hidden_dim=16,
        intermediate_dim=32, max_sequence_length=12,
    )
    return CausalLM(backbone, preprocessor), (ZH, None)


TASKS = {
    "classifier_lstm": lambda: classifier("lstm"),
    "classifier_transformer": lambda: classifier("transformer"),
    "seq2seq_lm": translator,
    "causal_lm": language_model,
}


def fit(model, data):
    model.compile(learning_rate=C.LEARNING_RATE)
    x, y = data
    history = model.fit(x, y, batch_size=BATCH, epochs=EPOCHS, shuffle=False, verbose=0)
    return [float(v) for v in history.history["loss"]]


def build(make, initial=None):
    """The task, built on a first batch, with `initial` weights if given; and its data."""
    keras.utils.set_random_seed(0)
    model, data = make()
    x = data[0]
    model.predict({k: v[:BATCH] for k, v in x.items()} if isinstance(x, dict) else x[:BATCH],
                  verbose=0)
    if initial is not None:
        model.set_weights(initial)
    return model, data


def main():
    if BACKEND == "tensorflow":
        strategy = tf.distribute.MirroredStrategy(
            [d.name for d in tf.config.list_logical_devices("CPU")]
        )
        replicas, scope = strategy.num_replicas_in_sync, strategy.scope
    else:
        import jax

        distribution = keras.distribution.DataParallel(devices=jax.devices())
        replicas, scope = len(jax.devices()), distribution.scope

    results = {"replicas": replicas}
    for name, make in TASKS.items():
        reference, data = build(make)  # one device
        initial = reference.get_weights()
        with scope():
            model, _ = build(make, initial)
            losses = fit(model, data)
        reference_losses = fit(reference, data)
        names = [w.path for w in reference.weights]
        diffs = C.max_differences(reference.get_weights(), model.get_weights(), names)
        moved = max(float(np.max(np.abs(a - b))) for a, b in zip(initial, model.get_weights()))
        results[name] = {
            "losses": losses,
            "reference_losses": reference_losses,
            "weight_diff": max(diffs.values()),
            "moved": moved,
        }
    C.report(**results)


if __name__ == "__main__":
    main()
