"""`MLPBackbone`: causal windows, the decoding cache, unit scales, roles, saving, CausalLM."""

import keras
import numpy as np
import pytest

import keras_unitscale as ku
from keras_unitscale.layers._weights import role_of
from keras_unitscale.models.mlp_backbone import MLPBackbone
from keras_unitscale.ops.activations import SCALES
from roundtrip import assert_config_roundtrip
from scale_utils import layer_stds

VOCAB, WINDOW = 50, 3


def _np(x):
    return keras.ops.convert_to_numpy(x)


@pytest.fixture(scope="module")
def backbone():
    keras.utils.set_random_seed(0)
    return MLPBackbone(VOCAB, hidden_dim=16, window=WINDOW, embedding_dim=6)


def _ids(batch=3, length=7, seed=0):
    return np.random.default_rng(seed).integers(1, VOCAB, (batch, length)).astype("int32")


def _run(backbone, ids, mask=None):
    mask = np.ones_like(ids) if mask is None else mask
    return _np(backbone({"token_ids": ids, "padding_mask": mask}))


def test_each_position_sees_exactly_its_window(backbone):
    ids = _ids()
    before = _run(backbone, ids)
    assert before.shape == (3, 7, 16)
    changed = ids.copy()
    changed[:, 2] = np.where(ids[:, 2] == 5, 6, 5)
    after = _run(backbone, changed)
    moved = np.abs(before - after).max(axis=-1) > 1e-4
    # Token 2 is seen by positions 2, 3, 4 (window 3) and by no other.
    expected = np.zeros(7, bool)
    expected[2: 2 + WINDOW] = True
    np.testing.assert_array_equal(moved, np.broadcast_to(expected, moved.shape))


def test_start_is_left_padded_and_masked_tokens_read_as_padding(backbone):
    ids = _ids()
    # Position 0 sees [pad, pad, t0]: the same as a sequence that starts with two pad tokens.
    padded = np.concatenate([np.zeros((3, 2), "int32"), ids], axis=1)
    np.testing.assert_allclose(_run(backbone, ids), _run(backbone, padded)[:, 2:], atol=1e-5)
    mask = np.ones_like(ids)
    mask[:, 1] = 0
    other = ids.copy()
    other[:, 1] = 0
    np.testing.assert_allclose(_run(backbone, ids, mask), _run(backbone, other), atol=1e-6)


def test_cache_matches_the_full_pass(backbone):
    ids = _ids(length=6)
    full = _run(backbone, ids)
    cache = backbone.empty_cache(batch_size=3, max_length=6)
    assert tuple(cache.shape) == (3, 6)
    hidden, cache = backbone.call_with_cache(ids[:, :4], cache, 0)
    outputs = [_np(hidden)]
    for t in (4, 5):
        hidden, cache = backbone.call_with_cache(ids[:, t: t + 1], cache, t)
        outputs.append(_np(hidden))
    np.testing.assert_allclose(np.concatenate(outputs, axis=1), full, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(_np(cache), ids)


class _Stream(keras.layers.Layer):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def call(self, token_ids, padding_mask):
        return self.model({"token_ids": token_ids, "padding_mask": padding_mask})


def test_unit_output_and_derived_gradient_scales():
    """Predictions (8 x 64 tokens of a 256-token vocabulary, window 4 x width 64 = fan-in 256,
    hidden 512, a unit upstream gradient):
    - the output, a ReLU scaled by its forward scale, has std 1 (within 0.1);
    - the ReLU's gradient is scaled by the forward scale too (`to_output_scale`), so the
      pre-activation gradient has std fwd * sqrt(1/2) = fwd / bwd (1.21), and so has the
      hidden kernel's (its input is unit) (within 10%);
    - the hidden layer's input gradient is scaled by `fan_in ** -0.5`, not `fan_out ** -0.5`:
      std 1.21 * sqrt(512 / 256) = 1.71, which the embedding rule passes to the table (its
      scale divides out the ~8 uses of each row) (within 15%: the rows are used unevenly).
    A 20% error in any one of these scales leaves its band."""
    keras.utils.set_random_seed(0)
    vocab, width, window, hidden = 256, 64, 4, 512
    model = MLPBackbone(vocab, hidden_dim=hidden, window=window, embedding_dim=width)
    ids = np.random.default_rng(0).integers(1, vocab, (8, 64)).astype("int32")
    out, _, grads = layer_stds(_Stream(model), ids, np.ones_like(ids))
    assert abs(out - 1) <= 0.1, f"output std {out:.3f}"
    relu = SCALES["relu"][0] / SCALES["relu"][1]
    for suffix, want, tol in (("hidden/kernel", relu, 0.1),
                              ("token_embedding/embeddings", relu * (hidden / 256) ** 0.5, 0.15)):
        (value,) = [s for path, s in grads.items() if path.endswith(suffix)]
        assert abs(value / want - 1) <= tol, f"{suffix} grad std {value:.3f} vs {want:.3f}"


def test_weights_declare_their_umup_roles(backbone):
    roles = {w.path: role_of(w) for w in backbone.weights}
    table, kernel, bias = (roles["token_embedding/embeddings"], roles["hidden/kernel"],
                           roles["hidden/bias"])
    assert (table.role, table.fan_in) == ("embedding", 6)
    assert (kernel.role, kernel.fan_in) == ("weight", WINDOW * 6)
    assert bias.role == "bias"
    assert len(roles) == 3


def test_config_keras_and_preset_roundtrips(backbone, tmp_path):
    clone = assert_config_roundtrip(backbone)
    assert (clone.window, clone.embedding_dim, clone.padding_token_id) == (WINDOW, 6, 0)
    assert MLPBackbone(VOCAB, hidden_dim=4).get_config()["embedding_dim"] is None
    ids = _ids()
    expected = _run(backbone, ids)
    path = str(tmp_path / "backbone.keras")
    backbone.save(path)
    restored = keras.saving.load_model(path)
    assert type(restored) is MLPBackbone
    np.testing.assert_allclose(_run(restored, ids), expected, rtol=1e-6, atol=1e-6)
    small = ku.models.CausalLM.from_preset("mlp_small", vocabulary_size=30, hidden_dim=8)
    assert type(small.backbone) is MLPBackbone and small.backbone.window == 8
    assert small.backbone.hidden_dim == small.backbone.embedding_dim == 8
    backbone.save_to_preset(str(tmp_path / "preset"))
    loaded = ku.models.Backbone.from_preset(str(tmp_path / "preset"))
    assert type(loaded) is MLPBackbone
    np.testing.assert_allclose(_run(loaded, ids), expected, rtol=1e-6, atol=1e-6)


def test_causal_lm_generate_decodes_greedily_through_the_cache():
    """`generate` (the compiled loop over `call_with_cache`) picks, at each step, the argmax
    of a full pass over the text so far."""
    from keras_unitscale.preprocessors import CausalLMPreprocessor
    from keras_unitscale.tokenizers import CharacterTokenizer

    preprocessor = CausalLMPreprocessor(CharacterTokenizer.from_corpus(["abcdefgh"]), 10)
    keras.utils.set_random_seed(1)
    model = ku.models.CausalLM(
        MLPBackbone(preprocessor.tokenizer.vocabulary_size(), hidden_dim=16, window=2),
        preprocessor)
    packed = {k: _np(v).astype("int32") for k, v in
              preprocessor.generate_preprocess(["ab", "c"], sequence_length=8).items()}
    generated = model.generate(packed, stop_token_ids=None)
    expected = packed["token_ids"].copy()
    prompt = packed["padding_mask"].astype(bool)
    for t in range(1, 8):
        logits = _np(model({"token_ids": expected, "padding_mask": np.ones_like(expected)}))
        expected[:, t] = np.where(prompt[:, t], expected[:, t], logits[:, t - 1].argmax(-1))
    np.testing.assert_array_equal(_np(generated["token_ids"]), expected)
    assert not np.array_equal(expected[0, 3:], expected[1, 3:])  # the prompts matter


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(vocabulary_size=0, hidden_dim=4), "vocabulary_size"),
        (dict(vocabulary_size=10, hidden_dim=0), "hidden_dim"),
        (dict(vocabulary_size=10, hidden_dim=4, window=0), "window"),
        (dict(vocabulary_size=10, hidden_dim=4, embedding_dim=-1), "embedding_dim"),
        (dict(vocabulary_size=10, hidden_dim=4, padding_token_id=10), "padding_token_id"),
        (dict(vocabulary_size=10, hidden_dim=4, padding_token_id=-1), "padding_token_id"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MLPBackbone(**kwargs)


def test_a_tied_causal_lm_needs_embedding_dim_equal_to_hidden_dim(backbone):
    # `backbone` has embedding_dim 6 and hidden_dim 16: a tied readout cannot be built.
    with pytest.raises(ValueError, match=r"tie_weights=True.*embedding_dim 6.*hidden_dim \(16\)"):
        ku.models.CausalLM(backbone)
    untied = ku.models.CausalLM(backbone, tie_weights=False)
    assert not untied.lm_head.tied


def test_quantize_int8_quantizes_every_kernel_and_round_trips(tmp_path):
    keras.utils.set_random_seed(0)
    model = ku.models.CausalLM(MLPBackbone(VOCAB, hidden_dim=16, window=WINDOW))
    ids = _ids()
    x = {"token_ids": ids, "padding_mask": np.ones_like(ids)}
    before = _np(model(x))
    model.quantize("int8")
    quantized = {layer.name for layer in model.backbone._flatten_layers()
                 if layer.dtype_policy.quantization_mode == "int8"}
    assert quantized == {"token_embedding", "hidden"}  # the readout is the tied table
    after = _np(model(x))
    # Weight-only int8 at abs-max per channel: a relative error near 2^-8, not a new model.
    assert 0 < np.abs(after - before).max() < 0.02 * np.abs(before).max()
    model.save(tmp_path / "lm.keras")
    loaded = keras.models.load_model(tmp_path / "lm.keras")
    np.testing.assert_array_equal(_np(loaded(x)), after)
