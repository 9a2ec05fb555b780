"""Bad input gets a clear error naming the argument the user passed (issue 21), on both
backends: argument checks (`keras_unitscale._validation` and the constructors that use it),
data checked where it enters (task, generate, layer call, also inside a compiled function),
and the commands. Each case is `(id, make, error type, text the message must hold)`; no
case runs a compiled model: the checks come first."""

import types

import keras
import numpy as np
import pytest

import keras_unitscale as ku
from keras_unitscale import _validation as check
from keras_unitscale import ops as uops
from keras_unitscale.cli import main
from keras_unitscale.layers.attention import _check_cache_index, _check_masks
from keras_unitscale.models import CausalLM, Seq2SeqLM, TextClassifier
from keras_unitscale.models.backbones import TransformerDecoderBackbone, TransformerEncoderBackbone
from keras_unitscale.models.seq2seq_backbone import Seq2SeqBackbone
from keras_unitscale.models.task_inputs import check_model_inputs
from keras_unitscale.preprocessors import (
    CausalLMPreprocessor,
    Seq2SeqLMPreprocessor,
    TextClassifierPreprocessor,
)
from keras_unitscale.tokenizers import CharacterTokenizer

NAN, INF = float("nan"), float("inf")
TEXTS = ["我喜欢这本书", "这本书很好", "我很喜欢猫", "猫很好"]
LABELS = np.array([1, 1, 0, 0])
LENGTH = 8


@pytest.fixture(scope="module")
def m():
    """The models the cases share, built once per module (none is compiled or trained)."""
    keras.utils.set_random_seed(0)
    tokenizer = CharacterTokenizer.from_corpus(TEXTS)
    vocab = tokenizer.vocabulary_size()
    encoder = TransformerEncoderBackbone(vocab, num_layers=1, num_heads=2, hidden_dim=8,
                                         intermediate_dim=8, max_sequence_length=LENGTH)
    classifier = TextClassifier(
        encoder, preprocessor=TextClassifierPreprocessor(tokenizer, sequence_length=LENGTH),
        num_classes=2,
    )
    raw = TextClassifier(encoder, num_classes=2)  # no preprocessor: packed inputs
    decoder = TransformerDecoderBackbone(vocab, num_layers=1, num_heads=2, hidden_dim=8,
                                         intermediate_dim=8, max_sequence_length=LENGTH)
    lm = CausalLM(decoder, CausalLMPreprocessor(tokenizer, sequence_length=LENGTH))
    attention = ku.layers.MultiHeadAttention(num_heads=2, key_dim=4)
    return types.SimpleNamespace(
        tokenizer=tokenizer, vocab=vocab, classifier=classifier, raw=raw, lm=lm,
        encoder=encoder, attention=attention, lstm=ku.layers.LSTM(5), gru=ku.layers.GRU(5),
        positions=ku.layers.PositionEmbedding(4),
    )


def _seq2seq_backbone(m):
    return Seq2SeqBackbone(m.vocab, num_layers=1, num_heads=2, hidden_dim=8, intermediate_dim=8,
                           max_sequence_length=LENGTH)


def packed(ids, mask=None):
    ids = np.asarray(ids)
    return {"token_ids": ids,
            "padding_mask": np.ones(ids.shape, "int32") if mask is None else np.asarray(mask)}


def ones(*shape, dtype="float32"):
    return np.ones(shape, dtype)


def compiled(fn):
    """`fn` run inside the backend's compiled function (`jax.jit` or `tf.function`)."""
    if keras.backend.backend() == "jax":
        import jax

        return jax.jit(fn)
    import tensorflow as tf

    return tf.function(fn)


# 1. The shared checks: each names the argument it is given ---------------------------------
V = check
VALIDATION = [
    ("positive_int-zero", lambda: V.positive_int(0, "units"), "`units`"),
    ("positive_int-negative", lambda: V.positive_int(-3, "units"), "`units`"),
    ("positive_int-float", lambda: V.positive_int(2.0, "units"), "`units`"),
    ("positive_int-bool", lambda: V.positive_int(True, "units"), "`units`"),
    ("positive_int-string", lambda: V.positive_int("4", "units"), "`units`"),
    ("positive_int-none", lambda: V.positive_int(None, "units"), "`units`"),
    ("non_negative_int", lambda: V.non_negative_int(-1, "seed"), "`seed`"),
    ("finite-nan", lambda: V.finite_number(NAN, "scale"), "`scale`"),
    ("finite-inf", lambda: V.finite_number(-INF, "scale"), "`scale`"),
    ("finite-string", lambda: V.finite_number("1", "scale"), "`scale`"),
    ("positive-zero", lambda: V.positive_number(0, "mult"), "`mult`"),
    ("positive-negative", lambda: V.positive_number(-0.5, "mult"), "`mult`"),
    ("positive-nan", lambda: V.positive_number(NAN, "mult"), "`mult`"),
    ("positive-inf", lambda: V.positive_number(INF, "mult"), "`mult`"),
    ("positive-bool", lambda: V.positive_number(True, "mult"), "`mult`"),
    ("non_negative-negative", lambda: V.non_negative_number(-1e-9, "tau"), "`tau`"),
    ("non_negative-nan", lambda: V.non_negative_number(NAN, "tau"), "`tau`"),
    ("probability-one", lambda: V.probability(1.0, "dropout"), "`dropout`"),
    ("probability-negative", lambda: V.probability(-0.1, "dropout"), "`dropout`"),
    ("probability-nan", lambda: V.probability(NAN, "dropout"), "`dropout`"),
    ("probability-string", lambda: V.probability("0.1", "dropout"), "`dropout`"),
    ("fraction-zero", lambda: V.open_fraction(0.0, "validation_split"), "`validation_split`"),
    ("fraction-one", lambda: V.open_fraction(1, "validation_split"), "`validation_split`"),
    ("fraction-nan", lambda: V.open_fraction(NAN, "validation_split"), "`validation_split`"),
    ("one_of", lambda: V.one_of("sum", ("mean", "max"), "pooling"), "`pooling`"),
    ("int_tuple-int", lambda: V.int_tuple(3, "stop_token_ids"), "(3,)"),
    ("int_tuple-floats", lambda: V.int_tuple([1.5], "stop_token_ids"), "`stop_token_ids`"),
    ("int_tuple-string", lambda: V.int_tuple("3", "stop_token_ids"), "`stop_token_ids`"),
    ("integer_dtype", lambda: V.integer_dtype(ones(2), "token_ids"), "float32"),
    ("float_input", lambda: V.float_input(ones(2, dtype="int32"), "x"), "int32"),
    ("min_rank", lambda: V.min_rank((3,), 2, "inputs"), "`inputs`"),
    ("same_shape", lambda: V.same_shape((2, 3), (2, 4), "mask", "ids"), "`mask`"),
    ("same_shape-rank", lambda: V.same_shape((2,), (2, 4), "mask", "ids"), "`mask`"),
    ("length", lambda: V.length_at_most(9, 8, "token_ids", "positions"), "`token_ids`"),
    ("ids-high", lambda: V.ids_in_range([0, 9], 9, "ids"), "[0, 9]"),
    ("ids-negative", lambda: V.ids_in_range([-1], 9, "ids"), "[-1, -1]"),
]


@pytest.mark.parametrize("make, text", [c[1:] for c in VALIDATION], ids=[c[0] for c in VALIDATION])
def test_shared_checks_name_the_argument(make, text):
    with pytest.raises(ValueError) as error:
        make()
    assert text in str(error.value)


def test_shared_checks_return_canonical_values():
    assert V.positive_int(np.int64(3), "n") == 3 and type(V.positive_int(np.int64(3), "n")) is int
    assert V.positive_number(np.float32(0.5), "x") == 0.5
    assert V.probability(0, "rate") == 0.0
    assert V.int_tuple(np.array([1, 2]), "ids") == (1, 2)
    assert V.one_of(None, ("a", None), "c") is None
    V.same_shape((None, 3), (2, 3), "mask", "ids")  # unknown dims match
    V.ids_in_range(np.zeros((0,), "int32"), 1, "ids")  # nothing to check


# 2. Constructors and ops: non-finite and out-of-range arguments refused where given --------
def _decoder(**kwargs):
    return TransformerDecoderBackbone(10, num_layers=1, num_heads=2, hidden_dim=8,
                                      intermediate_dim=8, max_sequence_length=8, **kwargs)


L = ku.layers
CONSTRUCTORS = [
    ("layer_norm-eps-nan", lambda: L.LayerNormalization(epsilon=NAN), "`epsilon`"),
    ("layer_norm-eps-inf", lambda: L.LayerNormalization(epsilon=INF), "`epsilon`"),
    ("layer_norm-eps-zero", lambda: L.LayerNormalization(epsilon=0.0), "`epsilon`"),
    ("residual-tau-nan", lambda: L.Residual(L.Dense(4), tau=NAN), "`tau`"),
    ("residual-tau-inf", lambda: L.Residual(L.Dense(4), tau=INF), "`tau`"),
    ("residual-tau-negative", lambda: L.Residual(L.Dense(4), tau=-1.0), "`tau`"),
    ("residual-not-a-layer", lambda: L.Residual(lambda x: x), "`layer`"),
    ("residual_split-tau-nan", lambda: L.ResidualSplit(tau=NAN), "`tau`"),
    ("residual_add-tau-nan", lambda: L.ResidualAdd(tau=NAN), "`tau`"),
    ("mlp-dropout-1.5", lambda: L.MLP(8, dropout=1.5), "`dropout`"),
    ("mlp-dropout-negative", lambda: L.MLP(8, dropout=-0.1), "`dropout`"),
    ("mlp-dropout-nan", lambda: L.MLP(8, dropout=NAN), "`dropout`"),
    ("mlp-hidden_dim", lambda: L.MLP(0), "`hidden_dim`"),
    ("mlp-output_dim", lambda: L.MLP(8, output_dim=-2), "`output_dim`"),
    ("mlp-constraint", lambda: L.MLP(8, constraint="geometric"), "`constraint`"),
    ("embedding-input_dim", lambda: L.Embedding(0, 4), "`input_dim`"),
    ("embedding-output_dim", lambda: L.Embedding(10, 2.5), "`output_dim`"),
    ("position-length", lambda: L.PositionEmbedding(0), "`sequence_length`"),
    ("token_position-vocab",
     lambda: L.TokenAndPositionEmbedding(0, 4, 8), "`vocabulary_size`"),
    ("backbone-residual_mult-nan", lambda: _decoder(residual_mult=NAN), "`residual_mult`"),
    ("backbone-residual_mult-inf", lambda: _decoder(residual_mult=INF), "`residual_mult`"),
    ("backbone-residual_mult-zero", lambda: _decoder(residual_mult=0.0), "`residual_mult`"),
    ("backbone-attn_ratio-nan",
     lambda: _decoder(residual_attn_ratio=NAN), "`residual_attn_ratio`"),
    ("ops-taus-blocks", lambda: uops.transformer_residual_taus(0), "`num_blocks`"),
    ("ops-taus-mult-nan",
     lambda: uops.transformer_residual_taus(2, residual_mult=NAN), "`residual_mult`"),
    ("ops-decoder-taus-ratio",
     lambda: uops.decoder_residual_taus(2, residual_attn_ratio=-1), "`residual_attn_ratio`"),
    ("ops-residual_coefficients", lambda: uops.residual_coefficients(NAN), "`tau`"),
    ("ops-residual_taus", lambda: uops.residual_taus([1.0, -2.0]), "`branch_weights`"),
    ("ops-scale_fwd-nan", lambda: uops.scale_fwd(ones(2), NAN), "`scale`"),
    ("ops-scale_bwd-inf", lambda: uops.scale_bwd(ones(2), INF), "`scale`"),
    ("ops-dropout-rate", lambda: uops.dropout(ones(2), 1.0), "`rate`"),
    ("ops-constraint", lambda: uops.validate_constraint("mean"), "`constraint`"),
    ("tokenizer-empty-corpus", lambda: CharacterTokenizer.from_corpus([]), "`corpus`"),
    ("tokenizer-blank-corpus", lambda: CharacterTokenizer.from_corpus(["  ", ""]), "`corpus`"),
    ("tokenizer-min_frequency",
     lambda: CharacterTokenizer.from_corpus(["ab"], min_frequency=3), "min_frequency=3"),
]


@pytest.mark.parametrize("make, text", [c[1:] for c in CONSTRUCTORS],
                         ids=[c[0] for c in CONSTRUCTORS])
def test_constructors_refuse_bad_arguments(make, text):
    with pytest.raises(ValueError) as error:
        make()
    assert text in str(error.value)


# 3. Tasks: arguments and the data that enters them --------------------------------------
def _fit(task, **kwargs):
    return lambda m: getattr(m, task).fit(TEXTS, LABELS, verbose=0, **kwargs)


TASKS = [
    ("fit-validation_split-1.5", _fit("classifier", validation_split=1.5), "`validation_split`"),
    ("fit-validation_split-1", _fit("classifier", validation_split=1.0), "`validation_split`"),
    ("fit-validation_split-neg", _fit("classifier", validation_split=-0.5),
     "`validation_split`"),
    ("fit-validation_split-nan", _fit("classifier", validation_split=NAN), "`validation_split`"),
    ("fit-batch_size-0", _fit("classifier", batch_size=0), "`batch_size`"),
    ("fit-batch_size-negative", _fit("classifier", batch_size=-8), "`batch_size`"),
    ("fit-batch_size-float", _fit("classifier", batch_size=2.5), "`batch_size`"),
    ("fit-epochs-0", _fit("classifier", epochs=0), "`epochs`"),
    ("raw-fit-validation_split",
     lambda m: m.raw.fit(packed(ones(4, 8, dtype="int32")), LABELS, validation_split=2.0),
     "`validation_split`"),
    ("evaluate-batch_size",
     lambda m: m.classifier.evaluate(TEXTS, LABELS, batch_size=0, verbose=0), "`batch_size`"),
    ("predict-batch_size", lambda m: m.classifier.predict(TEXTS, batch_size=0), "`batch_size`"),
    ("raw-predict-batch_size",
     lambda m: m.raw.predict(packed(ones(1, 8, dtype="int32")), batch_size=-1), "`batch_size`"),
    ("predict-ints-for-text", lambda m: m.classifier.predict([1, 2, 3]), "`x`"),
    ("predict-none-in-texts", lambda m: m.classifier.predict(["很好", None]), "element 1"),
    ("predict-int-array-for-text",
     lambda m: m.classifier.predict(np.array([[1, 2]])), "`x`"),
    ("fit-none-in-texts", lambda m: m.classifier.fit(["很好", None], [0, 1]), "element 1"),
    ("raw-predict-float-ids",
     lambda m: m.raw.predict(packed(np.full((1, 8), 1.5, "float32"))), 'x["token_ids"]'),
    ("raw-predict-ids-above",
     lambda m: m.raw.predict(packed(np.full((1, 8), m.vocab, "int32"))), 'x["token_ids"]'),
    ("raw-predict-ids-negative",
     lambda m: m.raw.predict(packed(np.full((1, 8), -1, "int32"))), 'x["token_ids"]'),
    ("raw-predict-too-long",
     lambda m: m.raw.predict(packed(ones(1, 12, dtype="int32"))), "max_sequence_length"),
    ("raw-predict-mask-shape",
     lambda m: m.raw.predict(packed(ones(1, 8, dtype="int32"), ones(1, 5, dtype="int32"))),
     'x["padding_mask"]'),
    ("raw-predict-missing-key",
     lambda m: m.raw.predict({"token_ids": ones(1, 8, dtype="int32")}), "padding_mask"),
    ("raw-predict-array", lambda m: m.raw.predict(ones(1, 8, dtype="int32")), "`x`"),
    ("raw-predict-list", lambda m: m.raw.predict([1, 2, 3]), "`x`"),
    ("raw-predict-rank", lambda m: m.raw.predict(packed(ones(8, dtype="int32"))),
     'x["token_ids"]'),
    ("raw-evaluate-ids-above",
     lambda m: m.raw.evaluate(packed(np.full((4, 8), 99, "int32")), LABELS), 'x["token_ids"]'),
    ("raw-fit-float-ids",
     lambda m: m.raw.fit(packed(np.full((4, 8), 2.0, "float32")), LABELS), 'x["token_ids"]'),
    ("raw-fit-validation-data",
     lambda m: m.raw.fit(packed(ones(4, 8, dtype="int32")), LABELS,
                         validation_data=(packed(np.full((4, 8), 99, "int32")), LABELS)),
     'validation_data[0]["token_ids"]'),
    ("raw-call-float-ids", lambda m: m.raw(packed(np.full((1, 8), 1.5, "float32"))),
     'inputs["token_ids"]'),
    ("raw-call-ids-above", lambda m: m.raw(packed(np.full((1, 8), 99, "int32"))),
     'inputs["token_ids"]'),
    ("raw-call-mask-shape",
     lambda m: m.raw(packed(ones(2, 8, dtype="int32"), ones(2, 7, dtype="int32"))),
     'inputs["padding_mask"]'),
    ("classifier-sequence-over-positions",
     lambda m: TextClassifier(m.encoder, 2, preprocessor=TextClassifierPreprocessor(
         m.tokenizer, sequence_length=LENGTH + 4)), "`preprocessor`"),
    ("classifier-vocabulary-over-backbone",
     lambda m: TextClassifier(m.encoder, 2, preprocessor=TextClassifierPreprocessor(
         CharacterTokenizer.from_corpus(TEXTS + ["abc"]), sequence_length=LENGTH)),
     "vocabulary_size"),
    ("causal_lm-sequence-over-positions",
     lambda m: CausalLM(m.lm.backbone, CausalLMPreprocessor(m.tokenizer,
                                                            sequence_length=LENGTH + 4)),
     "`preprocessor`'s sequence_length"),
    ("seq2seq_lm-decoder-sequence-over-positions",
     lambda m: Seq2SeqLM(_seq2seq_backbone(m), Seq2SeqLMPreprocessor(
         m.tokenizer, m.tokenizer, LENGTH, LENGTH + 4)),
     "`preprocessor`'s decoder_sequence_length"),
    ("classifier-pooling", lambda m: TextClassifier(m.encoder, 2, pooling="sum"), "`pooling`"),
    ("classifier-dropout", lambda m: TextClassifier(m.encoder, 2, dropout=1.5), "`dropout`"),
    ("classifier-output_mult-nan",
     lambda m: TextClassifier(m.encoder, 2, output_mult=NAN), "`output_mult`"),
    ("compile-optimizer-name",
     lambda m: TextClassifier(m.encoder, 2).compile(optimizer="nope"), "`optimizer`"),
    ("generate-stop-int", lambda m: m.lm.generate("我", stop_token_ids=3), "(3,)"),
    ("generate-stop-above",
     lambda m: m.lm.generate("我", stop_token_ids=(m.vocab + 10,)), "`stop_token_ids`"),
    ("generate-stop-negative",
     lambda m: m.lm.generate("我", stop_token_ids=(-1,)), "`stop_token_ids`"),
    ("generate-stop-strings",
     lambda m: m.lm.generate("我", stop_token_ids=("[END]",)), "`stop_token_ids`"),
    ("generate-stop-float", lambda m: m.lm.generate("我", stop_token_ids=2.0),
     "`stop_token_ids`"),
    ("generate-packed-ids-above",
     lambda m: m.lm.generate(packed([[1, m.vocab + 3, 0, 0, 0, 0, 0, 0]],
                                    [[1, 1, 0, 0, 0, 0, 0, 0]]), stop_token_ids=None),
     'prompts["token_ids"]'),
    ("generate-packed-float-ids",
     lambda m: m.lm.generate(packed(np.full((1, 8), 2.0)), stop_token_ids=None),
     'prompts["token_ids"]'),
    ("generate-packed-mask-shape",
     lambda m: m.lm.generate(packed(ones(1, 8, dtype="int32"), ones(1, 6, dtype="int32")),
                             stop_token_ids=None), 'prompts["padding_mask"]'),
    ("generate-packed-too-long",
     lambda m: m.lm.generate(packed(ones(1, 12, dtype="int32")), stop_token_ids=None),
     "max_sequence_length"),
    ("generate-max_length-over",
     lambda m: m.lm.generate("我", max_length=LENGTH + 8), "`max_length`"),
    ("generate-prompts-none", lambda m: m.lm.generate(["我", None]), "`prompts`"),
    # From a battery of plausible mistakes (issue 21's list, rerun):
    ("fit-sample_weight-length",
     lambda m: m.classifier.fit(TEXTS, LABELS, sample_weight=[1.0, 2.0]), "`sample_weight`"),
    ("predict-object-array-with-none",
     lambda m: m.classifier.predict(np.array(["很好", None], dtype=object)), "element 1"),
    ("from_preset-load_weights-string",
     lambda m: ku.models.Backbone.from_preset("transformer_tiny", load_weights="no"),
     "`load_weights`"),
    ("backbone-predict-list", lambda m: m.encoder.predict([1, 2, 3]), "`x`"),
    ("backbone-call-missing-key",
     lambda m: m.encoder({"token_ids": ones(1, LENGTH, dtype="int32")}), "padding_mask"),
    ("backbone-call-float-ids",
     lambda m: m.encoder(packed(np.full((1, LENGTH), 1.0, "float32"))), 'inputs["token_ids"]'),
    ("evaluate-labels-above",
     lambda m: m.classifier.evaluate(TEXTS, np.array([0, 3, 0, 1]), verbose=0), "`y`"),
    ("call_with_cache-past",
     lambda m: m.lm.call_with_cache(np.array([[1]]), m.lm.empty_cache(1, 8), 8),
     "`cache_update_index`"),
]


@pytest.mark.parametrize("make, text", [c[1:] for c in TASKS], ids=[c[0] for c in TASKS])
def test_tasks_check_arguments_and_data(m, make, text):
    with pytest.raises(ValueError) as error:
        make(m)
    assert text in str(error.value)


# 3b. Packed batches read from a pipeline (tf.data, a generator, a PyDataset) and a backbone's
# own predict and call: the same rules as arrays, checked batch by batch -----------------
def batches(ids, mask=None, labels=True, signature=False):
    """A `tf.data.Dataset` of packed batches of 2 (with labels unless `labels=False`);
    `signature=True` gives it unknown static shapes, so only the values can fail."""
    import tensorflow as tf

    x = packed(ids, mask)
    elements = (x, np.arange(len(x["token_ids"])) % 2) if labels else x
    if not signature:
        return tf.data.Dataset.from_tensor_slices(elements).batch(2)
    spec = {k: tf.TensorSpec((None, None), tf.int32) for k in x}
    spec = (spec, tf.TensorSpec((None,), tf.int64)) if labels else spec
    return tf.data.Dataset.from_generator(lambda: iter([elements]), output_signature=spec)


def generator(ids):
    yield packed(np.asarray(ids, "int32")), np.zeros(len(ids), "int64")


class Batches(keras.utils.PyDataset):
    def __init__(self, ids):
        super().__init__()
        self.ids = np.asarray(ids, "int32")

    def __len__(self):
        return 1

    def __getitem__(self, index):
        return packed(self.ids), np.zeros(len(self.ids), "int64")


ABOVE = np.full((4, LENGTH), 99, "int32")
PIPELINES = [
    ("dataset-predict-ids-above",
     lambda m: m.raw.predict(batches(ABOVE, labels=False), verbose=0),
     'x["token_ids"]', "received ids in [99, 99]"),
    # What the element spec shows is refused before Keras runs (no step is traced):
    ("dataset-fit-float-ids",
     lambda m: m.raw.fit(batches(np.full((4, LENGTH), 1.0, "float32")), verbose=0),
     'x["token_ids"]', "float32"),
    ("dataset-evaluate-mask-shape",
     lambda m: m.raw.evaluate(batches(ones(4, LENGTH, dtype="int32"),
                                      ones(4, 5, dtype="int32")), verbose=0),
     'x["padding_mask"]', "(None, 5)"),
    ("dataset-validation-float-ids",
     lambda m: m.raw.fit(batches(ones(4, LENGTH, dtype="int32")), verbose=0,
                         validation_data=batches(np.full((4, LENGTH), 1.0, "float32"))),
     'validation_data["token_ids"]', "float32"),
    ("dataset-mask-shape-values",
     lambda m: m.raw.predict(batches(ones(2, LENGTH, dtype="int32"),
                                     ones(2, 5, dtype="int32"), labels=False,
                                     signature=True), verbose=0),
     'x["padding_mask"]', "received shape [2 5]"),
    ("dataset-too-long-values",
     lambda m: m.raw.predict(batches(ones(2, 12, dtype="int32"), labels=False,
                                     signature=True), verbose=0),
     'x["token_ids"]', "has length 12"),
    ("dataset-not-a-dict",
     lambda m: m.raw.predict(batches(ones(4, LENGTH, dtype="int32"), labels=False).map(
         lambda x: x["token_ids"])), "`x`", "must be a dict"),
    ("generator-fit-ids-above", lambda m: m.raw.fit(generator(ABOVE[:2]), verbose=0),
     'x["token_ids"]', "[99, 99]"),
    ("pydataset-predict-ids-above", lambda m: m.raw.predict(Batches(ABOVE[:2]), verbose=0),
     'x["token_ids"]', "[99, 99]"),
    ("backbone-predict-ids-above",
     lambda m: m.encoder.predict(packed(ABOVE[:1]), verbose=0), 'x["token_ids"]', "[99, 99]"),
    ("backbone-predict-mask-shape",
     lambda m: m.encoder.predict(packed(ones(1, LENGTH, dtype="int32"),
                                        ones(1, 3, dtype="int32")), verbose=0),
     'x["padding_mask"]', "received shape (1, 3)"),
    ("backbone-predict-too-long",
     lambda m: m.encoder.predict(packed(ones(1, 12, dtype="int32")), verbose=0),
     'x["token_ids"]', "max_sequence_length (8)"),
    ("backbone-predict-batch_size",
     lambda m: m.encoder.predict(packed(ones(1, 4, dtype="int32")), batch_size=0),
     "`batch_size`", "positive integer"),
    ("backbone-predict-dataset",
     lambda m: m.encoder.predict(batches(np.full((4, LENGTH), 1.0, "float32"), labels=False)),
     'x["token_ids"]', "float32"),
    ("backbone-call-mask-shape",
     lambda m: m.encoder(packed(ones(1, LENGTH, dtype="int32"), ones(1, 3, dtype="int32"))),
     'inputs["padding_mask"]', "received shape (1, 3)"),
    ("backbone-call-too-long", lambda m: m.encoder(packed(ones(1, 12, dtype="int32"))),
     'inputs["token_ids"]', "max_sequence_length (8)"),
]


@pytest.mark.parametrize("make, name, text", [c[1:] for c in PIPELINES],
                         ids=[c[0] for c in PIPELINES])
def test_pipelines_and_backbones_check_packed_batches(m, make, name, text):
    with pytest.raises(ValueError) as error:
        make(m)
    assert name in str(error.value) and text in str(error.value)


def test_a_refused_batch_leaves_the_model_usable(m):
    """On JAX, Keras detaches a model's variables while `predict` runs; a batch refused
    before the first step must not leave them empty (their values stay as they were)."""
    before = [np.array(w) for w in m.raw.weights]
    with pytest.raises(ValueError, match="vocabulary_size"):
        m.raw.predict(batches(ABOVE, labels=False), verbose=0)
    after = [np.array(w) for w in m.raw.weights]
    assert len(after) == len(before) > 0
    for old, new in zip(before, after):
        np.testing.assert_array_equal(new, old)


# 4. Layers at call time: static shapes checked eagerly and inside compiled functions -----
def q(*shape):
    return np.zeros(shape, "float32")


LAYER_CALLS = [
    ("attention_mask-shape",
     lambda m, x: m.attention(x, x, attention_mask=np.ones((2, 3, 4), bool)),
     "`attention_mask`"),
    ("attention_mask-rank",
     lambda m, x: m.attention(x, x, attention_mask=np.ones((2, 3), bool)), "`attention_mask`"),
    ("query_mask-shape",
     lambda m, x: m.attention(x, x, query_mask=np.ones((2, 5), bool)), "`query_mask`"),
    ("value_mask-shape",
     lambda m, x: m.attention(x, x, value_mask=np.ones((2, 2), bool)), "`value_mask`"),
    ("lstm-initial_state-size",
     lambda m, x: m.lstm(x[..., :4], initial_state=[q(2, 6), q(2, 6)]), "`initial_state`"),
    ("lstm-initial_state-count",
     lambda m, x: m.lstm(x[..., :4], initial_state=[q(2, 5)]), "`initial_state`"),
    ("gru-initial_state-size",
     lambda m, x: m.gru(x[..., :4], initial_state=q(2, 3)), "`initial_state`"),
    ("residual-width",
     lambda m, x: L.Residual(L.Dense(5))(x), "`layer`"),
    ("position-too-long", lambda m, x: m.positions(q(2, 6, 8)), "`inputs`"),
]


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "compiled"])
@pytest.mark.parametrize("make, text", [c[1:] for c in LAYER_CALLS],
                         ids=[c[0] for c in LAYER_CALLS])
def test_layer_calls_check_shapes(m, make, text, jit):
    x = q(2, 3, 8)
    with pytest.raises(ValueError) as error:
        if jit:
            compiled(lambda x: make(m, x))(x)
        else:
            make(m, x)
    assert text in str(error.value)


@pytest.mark.parametrize(
    "make, text",
    [
        (lambda m: m.attention(q(2, 1, 8), q(2, 1, 8), cache=q(2, 2, 6, 2, 4),
                               cache_update_index=6), "`cache_update_index`"),
        (lambda m: m.positions(q(1, 2, 8), start_index=3), "`start_index`"),
        (lambda m: m.positions(q(1, 2, 8), start_index=-1), "`start_index`"),
        (lambda m: L.Embedding(10, 4)(np.array([[10]])), "`inputs`"),
        (lambda m: L.Embedding(10, 4)(np.array([[1.0]])), "integer"),
    ],
    ids=["cache-index-past", "start-index-past", "start-index-negative", "embedding-id",
         "embedding-float"],
)
def test_layer_calls_check_concrete_values(m, make, text):
    with pytest.raises(ValueError) as error:
        make(m)
    assert text in str(error.value)


@pytest.mark.parametrize("quantized", [False, True], ids=["float", "int8"])
def test_embedding_ids_outside_the_table_give_nan_rows_when_compiled(quantized):
    """Traced ids cannot raise: each outside [0, input_dim) gets a NaN row on both backends
    (not a clamped, wrapped or zero row), the others their own row."""
    keras.utils.set_random_seed(0)
    layer = L.Embedding(10, 4)
    layer.build()
    if quantized:
        layer.quantize("int8")
    ids = np.array([[10, 12, -1, -11, 3, 0, 9]], "int32")
    rows = np.asarray(compiled(layer)(ids))[0]
    assert np.isnan(rows[:4]).all() and not np.isnan(rows[4:]).any()
    np.testing.assert_allclose(rows[4:], np.asarray(layer(ids[:, 4:]))[0], rtol=1e-6)


def test_valid_calls_still_pass(m):
    """The checks refuse only what is wrong: the limits themselves are accepted (checked on
    the helpers the layers call, without running them)."""
    _check_masks(3, 3, 3, attention_mask=np.ones((2, 1, 3), bool), query_mask=q(2, 3))
    _check_masks(3, None, 5, attention_mask=keras.KerasTensor((None, 3, 5)))
    _check_cache_index(5, 1, 6)
    _check_cache_index(0, 6, 6)
    m.positions._check_positions(2, 2)
    m.positions._check_positions(4, np.int32(0))
    highest = packed(np.full((1, LENGTH), m.vocab - 1, "int32"))
    assert check_model_inputs(m.encoder, highest, "x") is None
    assert check_model_inputs(m.encoder, {"token_ids": keras.KerasTensor((None, 99), "float32"),
                                          "padding_mask": ones(1, 3)}, "x") is None  # symbolic
    x = q(2, 3, 8)
    assert tuple(L.Residual(L.Dense(8)).compute_output_shape(x.shape)) == (2, 3, 8)


# 5. The command line --------------------------------------------------------------------
@pytest.mark.parametrize("option, value", [
    ("--epochs", "0"), ("--epochs", "-2"), ("--batch-size", "0"), ("--validation-split", "1.5"),
    ("--validation-split", "-0.1"), ("--validation-split", "1"),
])
def test_cli_train_refuses_bad_options_by_their_names(tmp_path, capsys, option, value):
    code = main(["train", "text_classifier", "--data", str(tmp_path / "none.csv"),
                 "--output", str(tmp_path / "out"), option, value])
    assert code == 1
    assert option in capsys.readouterr().err
    assert not (tmp_path / "out").exists()

