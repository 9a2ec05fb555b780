"""Every task's `fit` on raw strings under a strategy equals the same `fit` on one device.

Run as `python tests/distributed/tasks_fit.py BACKEND` (tensorflow or jax); prints one
`RESULT {...}` line. Each task (TextClassifier, Seq2SeqLM, CausalLM) is built twice with the same initial weights: once under
`tf.distribute.MirroredStrategy` (TensorFlow) or `keras.distribution.DataParallel` (JAX) over
`NUM_DEVICES` virtual CPU devices, once on a single device. Both fit the same raw strings in
the same order (no shuffling, no dropout) through the task's own preprocessing; the report
holds the fit losses of both and the largest relative weight difference afterwards. (The LSTM
under both strategies is in `_common.py`'s model, which `tf_mirrored.py` and
`jax_distribution.py` check layer by layer; a second classifier with an LSTM backbone here
would test the same task code again.) Every tokenizer here splits characters: jieba's
segmentation in `tf.data` is the preprocessor's business, tested with the tasks, and tracing
it four times here would only add time.
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
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]

import _common as C  # noqa: E402
import tensorflow as tf  # noqa: E402

if BACKEND == "tensorflow":
    _cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        _cpu, [tf.config.LogicalDeviceConfiguration()] * NUM_DEVICES
    )

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_unitscale.models.backbones import TransformerEncoderBackbone  # noqa: E402
from keras_unitscale.models.seq2seq_backbone import Seq2SeqBackbone  # noqa: E402
from keras_unitscale.models.seq2seq_lm import Seq2SeqLM  # noqa: E402
from keras_unitscale.models.text_classifier import TextClassifier  # noqa: E402
from keras_unitscale.preprocessors import (  # noqa: E402
    Seq2SeqLMPreprocessor,
    TextClassifierPreprocessor,
)
from keras_unitscale.tokenizers import CharacterTokenizer  # noqa: E402
from presets import tiny_models as T  # noqa: E402  (tests/presets/tiny_models.py)

ZH, EN, LABELS = T.ZH * 4, T.EN * 4, np.tile(T.LABELS, 4)
BATCH, EPOCHS = 8, 2


def transformer_classifier():
    preprocessor = TextClassifierPreprocessor(CharacterTokenizer.from_corpus(T.ZH), 8)
    backbone = TransformerEncoderBackbone(
        preprocessor.tokenizer.vocabulary_size(), num_layers=1, num_heads=2, hidden_dim=16,
        intermediate_dim=32, max_sequence_length=8,
    )
    return TextClassifier(backbone, num_classes=2, preprocessor=preprocessor)


def seq2seq_lm():
    """`tiny_models.tiny_seq2seq_lm` with characters on both sides (untied readout)."""
    preprocessor = Seq2SeqLMPreprocessor(CharacterTokenizer.from_corpus(T.ZH),
                                         CharacterTokenizer.from_corpus(T.EN), 8, 8)
    backbone = Seq2SeqBackbone(
        preprocessor.tokenizer.vocabulary_size(), num_layers=1, num_heads=2, hidden_dim=8,
        intermediate_dim=16, max_sequence_length=8,
        decoder_vocabulary_size=preprocessor.decoder_tokenizer.vocabulary_size(),
    )
    return Seq2SeqLM(backbone, preprocessor, tie_weights=False)


# A transformer classifier, a seq2seq LM and the preset tests' tiny causal LM; their data.
TASKS = {
    "classifier_transformer": (transformer_classifier, (ZH, LABELS)),
    "seq2seq_lm": (seq2seq_lm, ({"encoder_text": ZH, "decoder_text": EN}, None)),
    "causal_lm": (T.tiny_causal_lm, (ZH, None)),
}


def fit(model, data):
    model.compile(learning_rate=C.LEARNING_RATE)
    x, y = data
    history = model.fit(x, y, batch_size=BATCH, epochs=EPOCHS, shuffle=False, verbose=0)
    return [float(v) for v in history.history["loss"]]


def build(make, data, initial=None):
    """The task, built on a first batch, with `initial` weights if given."""
    keras.utils.set_random_seed(0)
    model = make()
    x = data[0]
    sample = {k: v[:BATCH] for k, v in x.items()} if isinstance(x, dict) else x[:BATCH]
    # One eager call builds it (`predict` would also compile a function it never reuses).
    model(keras.utils.unpack_x_y_sample_weight(model.preprocessor(sample))[0])
    if initial is not None:
        model.set_weights(initial)
    return model


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
    for name, (make, data) in TASKS.items():
        reference = build(make, data)  # one device
        initial = reference.get_weights()
        with scope():
            model = build(make, data, initial)
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
