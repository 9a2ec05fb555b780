"""Masking makes padding irrelevant: the same real tokens give the same outputs whatever
padding follows them, in layers, backbones and tasks, causal or not, self- or
cross-attention; greedy generation does not depend on `max_length`. Relative differences at
most 1e-5 in float32 (full matmul precision is pinned in conftest.py)."""

import keras
import numpy as np
import pytest

import keras_unitscale as ku
from keras_unitscale.models import CausalLM
from keras_unitscale.models.backbones import (
    LSTMBackbone,
    TransformerDecoderBackbone,
    TransformerEncoderBackbone,
)
from keras_unitscale.models.seq2seq_backbone import Seq2SeqBackbone

VOCAB, REAL, PADDINGS = 40, 7, (0, 9, 57)


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _ids(seed=0, real=REAL):
    return np.random.default_rng(seed).integers(1, VOCAB, (2, real)).astype("int32")


def _padded(ids, n):
    return np.concatenate([ids, np.zeros((ids.shape[0], n), "int32")], axis=1)


def _assert_same(outputs):
    for out in outputs[1:]:
        scale = np.max(np.abs(outputs[0]))
        np.testing.assert_allclose(out, outputs[0], rtol=1e-5, atol=1e-5 * scale)


@pytest.mark.parametrize("causal", [True, False])
def test_keras_style_pipeline_gives_the_same_logits_whatever_the_padding(causal):
    # The tutorial pipeline of the bug report: Embedding(mask_zero) -> MultiHeadAttention ->
    # pooling -> Dense readout, padded by 0, 9 or 57 zeros.
    keras.utils.set_random_seed(0)
    inputs = keras.Input((None,), dtype="int32")
    x = ku.layers.Embedding(VOCAB, 32, mask_zero=True)(inputs)
    x = ku.layers.MultiHeadAttention(num_heads=2, key_dim=16)(x, x, use_causal_mask=causal)
    x = keras.layers.GlobalAveragePooling1D()(x)
    model = keras.Model(inputs, ku.layers.Dense(3, readout=True)(x))
    ids = _ids()
    _assert_same([_np(model(_padded(ids, n))) for n in PADDINGS])


def _backbone_outputs(backbone, n, seed=0):
    ids = _padded(_ids(seed), n)
    mask = (ids != 0).astype("int32")
    out = backbone({"token_ids": ids, "padding_mask": mask})
    return _np(out)[:, :REAL]


@pytest.mark.parametrize("kind", ["encoder", "decoder", "lstm"])
def test_backbones_ignore_the_padding(kind):
    keras.utils.set_random_seed(0)
    dims = dict(num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=32,
                max_sequence_length=REAL + max(PADDINGS))
    backbone = {
        "encoder": lambda: TransformerEncoderBackbone(VOCAB, **dims),
        "decoder": lambda: TransformerDecoderBackbone(VOCAB, **dims),
        "lstm": lambda: LSTMBackbone(VOCAB, hidden_dim=16, num_layers=2, bidirectional=True),
    }[kind]()
    _assert_same([_backbone_outputs(backbone, n) for n in PADDINGS])


def test_seq2seq_ignores_encoder_and_decoder_padding():
    keras.utils.set_random_seed(0)
    backbone = Seq2SeqBackbone(
        VOCAB, num_layers=1, num_heads=2, hidden_dim=16, intermediate_dim=32,
        max_sequence_length=REAL + max(PADDINGS),
    )
    source, target = _ids(1), _ids(2, real=5)
    outputs = []
    for n in PADDINGS:
        enc, dec = _padded(source, n), _padded(target, n // 2)
        out = backbone({
            "encoder_token_ids": enc, "encoder_padding_mask": (enc != 0).astype("int32"),
            "decoder_token_ids": dec, "decoder_padding_mask": (dec != 0).astype("int32"),
        })
        outputs.append(_np(out)[:, :5])
    _assert_same(outputs)


def test_greedy_generation_does_not_depend_on_max_length():
    # The shorter run's tokens are the start of the longer run's, for packed prompts of
    # different lengths (the prompt pass and the cache both see 24 or 64 positions).
    keras.utils.set_random_seed(0)
    backbone = TransformerDecoderBackbone(
        VOCAB, num_layers=2, num_heads=2, hidden_dim=32, intermediate_dim=64,
        max_sequence_length=64,
    )
    model = CausalLM(backbone, preprocessor=None)
    lengths = np.array([1, 3])
    ids = _ids(3, real=3)
    outputs = []
    for max_length in (24, 64):
        mask = np.arange(max_length)[None, :] < lengths[:, None]
        prompts = {"token_ids": _padded(ids, max_length - 3) * mask, "padding_mask": mask}
        out = model.generate(prompts, stop_token_ids=None)
        outputs.append(_np(out["token_ids"]))
    np.testing.assert_array_equal(outputs[1][:, :24], outputs[0])
    assert len(np.unique(outputs[0][:, 3:])) > 2  # it generated, and not one repeated token
