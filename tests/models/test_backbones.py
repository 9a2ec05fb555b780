import keras
import numpy as np
import pytest

import keras_unitscale as ku
from keras_unitscale.models.backbones import (
    Backbone,
    LSTMBackbone,
    TransformerDecoderBackbone,
    TransformerEncoderBackbone,
)
from roundtrip import assert_config_roundtrip
from scale_utils import layer_stds

VOCAB = 50


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _inputs(batch=3, length=7, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, VOCAB, (batch, length)).astype("int32")
    lengths = np.array([length, length - 2, 3][:batch])
    mask = (np.arange(length)[None, :] < lengths[:, None]).astype("int32")
    return {"token_ids": ids * mask, "padding_mask": mask}


def _lstm(**kwargs):
    return LSTMBackbone(VOCAB, hidden_dim=16, num_layers=2, **kwargs)


def _encoder(**kwargs):
    return TransformerEncoderBackbone(
        VOCAB, num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=32,
        max_sequence_length=8, **kwargs,
    )


def _decoder(**kwargs):
    return TransformerDecoderBackbone(
        VOCAB, num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=32,
        max_sequence_length=8, **kwargs,
    )


BACKBONES = {"lstm": _lstm, "encoder": _encoder, "decoder": _decoder}
_BUILT = {}


def _backbone(name):
    """One backbone of each kind per module (building one is the slow part)."""
    if name not in _BUILT:
        keras.utils.set_random_seed(0)
        _BUILT[name] = BACKBONES[name](dropout=0.1)
    return _BUILT[name]


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_builds_with_unit_outputs(name):
    backbone = _backbone(name)
    assert isinstance(backbone, Backbone) and isinstance(backbone, ku.models.UnitScaledModel)
    assert set(backbone.input) == {"token_ids", "padding_mask"}
    assert isinstance(backbone.token_embedding, ku.layers.Embedding)
    x = _inputs()
    y = _np(backbone(x))
    assert y.shape == (3, 7, 16)
    real = y[x["padding_mask"].astype(bool)]
    assert 0.5 < float(np.std(real)) < 2.0


class _Stream(keras.layers.Layer):
    """`model({"token_ids", "padding_mask"})` as a layer of two positional inputs, for
    `scale_utils.layer_stds` (which pulls back through the model's weights)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def call(self, token_ids, padding_mask):
        return self.model({"token_ids": token_ids, "padding_mask": padding_mask})


@pytest.mark.parametrize("cls", [TransformerEncoderBackbone, TransformerDecoderBackbone])
def test_residual_stream_and_gradients_before_the_final_norm(cls):
    """The final norm makes the backbone's output unit whatever the weights, so look before
    it, at one block (see the report of issue 22 on deeper stacks). Predictions, under a unit
    upstream gradient on the stream, batch 8 x 64 tokens of a 256-token vocabulary:
    - the stream is unit: a unit embedding (two unit tables added with `2 ** -0.5`), and
      each residual keeps a unit stream unit (within 0.1);
    - every tensor inside a branch sees the stream's unit gradient (`residual_add` passes it
      unchanged), so the attention's value and output kernels get unit gradients, and so
      does the token table (its rule divides out the ~2 uses of each row) (within 0.15);
    - the MLP's down kernel sees GELU outputs of second moment `1 + mean^2`: gradient std
      `sqrt(1 + MEANS["gelu"] ** 2)` = 1.11; the up kernel gets the gradient the down
      projection passes back under `to_output_scale` (`fan_in ** -0.5` where unit would be
      `fan_out ** -0.5`: `sqrt(128 / 256)`) times GELU's forward / backward scale ratio:
      0.81 (within 10%).
    A 20% error in any one of these scales moves its check out of its band."""
    from keras_unitscale.ops.activations import MEANS, SCALES

    keras.utils.set_random_seed(0)
    vocab, hidden, intermediate = 256, 128, 256
    backbone = cls(
        vocab, num_layers=1, num_heads=2, hidden_dim=hidden, intermediate_dim=intermediate,
        max_sequence_length=64,
    )
    stream = keras.Model(backbone.input, backbone.get_layer("output_norm").input)
    ids = np.random.default_rng(0).integers(0, vocab, (8, 64)).astype("int32")
    out, _, grads = layer_stds(_Stream(stream), ids, np.ones_like(ids))
    assert abs(out - 1) <= 0.1, f"residual stream std {out:.3f}"

    def grad(suffix):
        (value,) = [s for path, s in grads.items() if path.endswith(suffix)]
        return value

    for suffix in ("token_embedding/embeddings", "value_kernel", "attention_output_kernel"):
        assert abs(grad(suffix) - 1) <= 0.15, f"{suffix} grad std {grad(suffix):.3f}"
    down = (1 + MEANS["gelu"] ** 2) ** 0.5
    up = (hidden / intermediate) ** 0.5 * SCALES["gelu"][0] / SCALES["gelu"][1]
    for suffix, want in (("mlp/down/kernel", down), ("mlp/up/kernel", up)):
        assert abs(grad(suffix) / want - 1) <= 0.1, f"{suffix} grad {grad(suffix):.3f} vs {want:.3f}"


def test_lstm_backbone_output_is_unit():
    # No final norm here: a bidirectional layer concatenates two unit LSTMs (within 0.1).
    keras.utils.set_random_seed(0)
    backbone = LSTMBackbone(256, hidden_dim=128, num_layers=1)
    ids = np.random.default_rng(0).integers(0, 256, (8, 64)).astype("int32")
    y = _np(backbone({"token_ids": ids, "padding_mask": np.ones_like(ids)}))
    assert abs(float(np.std(y)) - 1) <= 0.1, f"output std {np.std(y):.3f}"


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_config_and_keras_roundtrip(name, tmp_path):
    backbone = _backbone(name)
    clone = assert_config_roundtrip(backbone)
    assert type(clone) is type(backbone)
    x = _inputs()
    expected = _np(backbone(x))
    path = str(tmp_path / "backbone.keras")
    backbone.save(path)
    restored = keras.saving.load_model(path)
    assert type(restored) is type(backbone)
    np.testing.assert_allclose(_np(restored(x)), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", ["lstm", "encoder"])
def test_padding_does_not_change_real_positions(name):
    backbone = _backbone(name)
    x = _inputs()
    other = dict(x, token_ids=np.where(x["padding_mask"] > 0, x["token_ids"], 7).astype("int32"))
    mask = x["padding_mask"].astype(bool)
    np.testing.assert_allclose(_np(backbone(x))[mask], _np(backbone(other))[mask], atol=1e-5)


def test_lstm_unidirectional_and_embedding_dim():
    backbone = LSTMBackbone(VOCAB, hidden_dim=12, bidirectional=False, embedding_dim=6)
    assert backbone.token_embedding.output_dim == 6
    assert _np(backbone(_inputs())).shape == (3, 7, 12)
    assert isinstance(backbone.lstm_layers[0], ku.layers.LSTM)


def test_transformer_residual_taus_follow_the_depth_rule():
    backbone = _backbone("encoder")
    for i, block in enumerate(backbone.transformer_layers):
        expected = ku.ops.transformer_residual_taus(2)[i]
        assert (block.tau["attention"], block.tau["mlp"]) == pytest.approx(expected)


def test_decoder_is_causal():
    backbone = _backbone("decoder")
    x = _inputs()
    x["padding_mask"] = np.ones_like(x["padding_mask"])
    changed = dict(x, token_ids=x["token_ids"].copy())
    changed["token_ids"][:, 4:] = 9
    before, after = _np(backbone(x)), _np(backbone(changed))
    np.testing.assert_allclose(before[:, :4], after[:, :4], rtol=1e-5, atol=1e-5)
    # ... while the positions that see the changed tokens do change.
    assert np.all(np.abs(before[:, 4:] - after[:, 4:]).max(axis=-1) > 1e-3)


def test_decoder_cache_matches_full_pass():
    backbone = _backbone("decoder")
    ids = _inputs()["token_ids"][:, :6] + 1
    full = _np(backbone({"token_ids": ids, "padding_mask": np.ones_like(ids)}))
    cache = backbone.empty_cache(batch_size=3, max_length=6)
    assert tuple(cache.shape) == (3, 2, 2, 6, 2, 8)
    hidden, cache = backbone.call_with_cache(ids[:, :4], cache, 0)
    outputs = [_np(hidden)]
    for t in (4, 5):
        hidden, cache = backbone.call_with_cache(ids[:, t : t + 1], cache, t)
        outputs.append(_np(hidden))
    np.testing.assert_allclose(np.concatenate(outputs, axis=1), full, rtol=1e-4, atol=1e-4)


DECODERS = {
    "decoder": _backbone,
    "lstm": lambda _: LSTMBackbone(VOCAB, hidden_dim=16, num_layers=2, bidirectional=False),
}


@pytest.mark.parametrize("name", sorted(DECODERS))
def test_decoder_contract_as_generation_uses_it(name):
    """The same calls on every decoder: a pass over left-aligned prompts of different lengths
    (with their padding mask), then one token a step from the shortest prompt's end, going
    over positions the longer prompts filled already. From each prompt's last token on, the
    outputs equal the full pass (those are the logits the sampler reads)."""
    keras.utils.set_random_seed(1)
    backbone = DECODERS[name](name)
    ids = np.random.default_rng(3).integers(5, VOCAB, (3, 6)).astype("int32")
    lengths = np.array([4, 2, 3])
    prompt_mask = np.arange(6)[None, :] < lengths[:, None]
    full = _np(backbone({"token_ids": ids, "padding_mask": np.ones_like(ids)}))
    cache = backbone.empty_cache(3, 6)
    hidden, cache = backbone.call_with_cache(ids[:, :4], cache, 0, padding_mask=prompt_mask)
    steps = {}
    for t in range(lengths.min() - 1, 6):
        hidden, cache = backbone.call_with_cache(ids[:, t : t + 1], cache, t)
        steps[t] = _np(hidden)[:, 0]
    for row, length in enumerate(lengths):
        for t in range(length - 1, 6):
            np.testing.assert_allclose(steps[t][row], full[row, t], rtol=1e-4, atol=1e-4)


def test_a_bidirectional_lstm_cannot_decode():
    with pytest.raises(ValueError, match="unidirectional"):
        _backbone("lstm").empty_cache(2, 4)


def test_dtype_policy_and_its_config():
    backbone = _lstm(dtype=keras.DTypePolicy("mixed_bfloat16"))
    assert backbone.dtype_policy.name == "mixed_bfloat16"
    assert backbone.lstm_layers[0].compute_dtype == "bfloat16"
    clone = LSTMBackbone.from_config(backbone.get_config())
    assert clone.dtype_policy.name == "mixed_bfloat16"


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: LSTMBackbone(VOCAB, hidden_dim=15), "hidden_dim"),
        (lambda: LSTMBackbone(0, hidden_dim=16), "vocabulary_size"),
        (lambda: LSTMBackbone(VOCAB, hidden_dim=16, dropout=1.5), "dropout"),
        (lambda: TransformerEncoderBackbone(VOCAB, 1, 3, 16, 32), "num_heads"),
        (lambda: TransformerDecoderBackbone(VOCAB, 1, 2, 16, 32, normalization="x"),
         "normalization"),
    ],
)
def test_bad_arguments(make, message):
    with pytest.raises(ValueError, match=message):
        make()
