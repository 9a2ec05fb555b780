"""CausalLM: raw-string training, generation, tying, saving and bad input, on both backends."""

import keras
import numpy as np
import pytest

from keras_unitscale.models import CausalLM
from keras_unitscale.models.backbones import LSTMBackbone, TransformerDecoderBackbone
from keras_unitscale.preprocessors import CausalLMPreprocessor
from keras_unitscale.tokenizers import CharacterTokenizer

TEXTS = ["我喜欢这本书", "这本书很好", "我很喜欢猫", "猫很好", "你喜欢这本书吗"] * 6
LENGTH = 12


def _preprocessor():
    return CausalLMPreprocessor(CharacterTokenizer.from_corpus(TEXTS), sequence_length=LENGTH)


def _transformer(vocabulary_size):
    return TransformerDecoderBackbone(
        vocabulary_size, num_layers=2, num_heads=2, hidden_dim=32, intermediate_dim=64,
        max_sequence_length=16,
    )


@pytest.fixture(scope="module")
def trained():
    """One small transformer LM fitted on raw strings, shared by the tests below."""
    keras.utils.set_random_seed(0)
    preprocessor = _preprocessor()
    model = CausalLM(_transformer(preprocessor.tokenizer.vocabulary_size()), preprocessor)
    model.compile()  # u-muP's AdamW at the default base rate
    losses = model.fit(TEXTS, batch_size=10, epochs=10, verbose=0).history["loss"]
    return model, losses[0], losses[-1]


def test_fit_on_raw_strings_lowers_the_loss(trained):
    _, before, after = trained
    assert np.isfinite(after) and after < 0.8 * before, (before, after)


def test_lstm_backbone_fits_and_generates():
    preprocessor = _preprocessor()
    backbone = LSTMBackbone(
        preprocessor.tokenizer.vocabulary_size(), hidden_dim=32, num_layers=2,
        bidirectional=False,
    )
    model = CausalLM(backbone, preprocessor, tie_weights=False)
    model.compile()
    losses = model.fit(TEXTS, batch_size=10, epochs=10, verbose=0).history["loss"]
    assert losses[-1] < 0.8 * losses[0], losses
    outputs = model.generate(["我", "这本"])
    assert [o[:1] for o in outputs] == ["我", "这"]
    assert all(isinstance(o, str) for o in outputs)


def test_generate_strings_in_strings_out(trained):
    model, _, _ = trained
    one = model.generate("我喜欢")
    many = model.generate(["我喜欢", "猫"])
    assert isinstance(one, str) and one.startswith("我喜欢")
    assert len(many) == 2 and many[0] == one and many[1].startswith("猫")
    stripped = model.generate("我喜欢", strip_prompt=True)
    assert one == "我喜欢" + stripped


def test_greedy_generation_is_deterministic(trained):
    model, _, _ = trained
    prompts = ["我", "你喜欢"]
    assert model.generate(prompts) == model.generate(prompts, sampler="greedy")
    sampled = model.generate(prompts, sampler="top_k")
    assert len(sampled) == 2 and all(s.startswith(p) for s, p in zip(sampled, prompts))


def test_tied_and_untied_readout():
    preprocessor = _preprocessor()
    vocab = preprocessor.tokenizer.vocabulary_size()
    tied = CausalLM(_transformer(vocab), preprocessor)
    untied = CausalLM(_transformer(vocab), preprocessor, tie_weights=False)
    assert len(untied.weights) == len(tied.weights) + 1
    assert tuple(untied.lm_head.kernel.shape) == (32, vocab)
    # The logits are the u-muP readout of the backbone's hidden states, `h @ W / hidden`,
    # where W is the embedding table's transpose when tied and the head's own kernel when
    # not (changing the table alone would also change the hidden states, so compare the
    # logits with both products).
    x = preprocessor(TEXTS[:2])[0]
    for model in (tied, untied):
        hidden = keras.ops.convert_to_numpy(model.backbone(x)).astype("float64")
        table = keras.ops.convert_to_numpy(model.backbone.token_embedding.embeddings)
        from_table = hidden @ table.T.astype("float64") / 32
        logits = keras.ops.convert_to_numpy(model(x))
        if model is tied:
            np.testing.assert_allclose(logits, from_table, rtol=1e-4, atol=1e-5)
        else:
            kernel = keras.ops.convert_to_numpy(model.lm_head.kernel).astype("float64")
            np.testing.assert_allclose(logits, hidden @ kernel / 32, rtol=1e-4, atol=1e-5)
            assert not np.allclose(logits, from_table, rtol=1e-2, atol=1e-3)


def test_keras_round_trip_reproduces_outputs(trained, tmp_path):
    model, _, _ = trained
    path = str(tmp_path / "causal_lm.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    assert isinstance(restored, CausalLM)
    np.testing.assert_allclose(
        model.predict(TEXTS[:4], verbose=0), restored.predict(TEXTS[:4], verbose=0), atol=1e-5
    )
    assert restored.generate(["我", "猫"]) == model.generate(["我", "猫"])
    assert restored.get_config() == model.get_config()


def test_bad_prompts_and_lengths(trained):
    model, _, _ = trained
    with pytest.raises(ValueError, match="empty"):
        model.generate([])
    # No room for even one token after the start token.
    with pytest.raises(ValueError, match="longer than the longest prompt"):
        model.generate(["我喜欢这本书"], max_length=1)
    with pytest.raises(ValueError, match="exceeds the 16 positions"):
        model.generate("我", max_length=40)
    with pytest.raises(ValueError, match="must be a positive int"):
        model.generate("我", max_length="10")
    with pytest.raises(ValueError, match="must hold strings"):
        model.generate(["我", 3])
    with pytest.raises(ValueError, match="string or a list of strings"):
        model.generate(42)
    with pytest.raises(ValueError, match="sampler"):
        model.generate("我", sampler="beam_me_up")
    with pytest.raises(ValueError, match="preprocessor"):
        model(["我喜欢"])


def test_bad_labels(trained):
    model, _, _ = trained
    with pytest.raises(ValueError, match="pass only `x`"):
        model.fit(TEXTS[:4], [1, 0, 1, 0], verbose=0)
    bare = CausalLM(model.backbone, preprocessor=None)
    bare.compile()
    x, _, _ = model.preprocessor(TEXTS[:4])
    with pytest.raises(ValueError, match="integer token ids"):
        bare.fit(x, np.zeros((4, LENGTH), "float32"), verbose=0)
    with pytest.raises(ValueError, match="integer token ids"):
        bare.fit(x, np.array([["a"] * LENGTH] * 4), verbose=0)
    with pytest.raises(ValueError, match="no preprocessor"):
        bare.generate(["我"])


def test_bad_backbones():
    vocab = _preprocessor().tokenizer.vocabulary_size()
    with pytest.raises(ValueError, match="unidirectional"):
        CausalLM(LSTMBackbone(vocab, hidden_dim=16, bidirectional=True))
    with pytest.raises(ValueError, match="embedding_dim"):
        CausalLM(LSTMBackbone(vocab, hidden_dim=16, embedding_dim=8, bidirectional=False))
    with pytest.raises(ValueError, match="TransformerDecoderBackbone"):
        inputs = keras.Input((None,), dtype="int32")
        CausalLM(keras.Model(inputs, keras.layers.Embedding(vocab, 8)(inputs)))


def test_a_prompt_longer_than_max_length_keeps_its_end(trained):
    # As a sliding window: [START] + the last max_length - 2 prompt tokens, then one new one.
    model, _, _ = trained
    out = model.generate(["我喜欢这本书"], max_length=5, stop_token_ids=None)[0]
    assert out.startswith("这本书") and len(out) == 4, out
    assert not out.startswith("我")
    # A prompt that fits is left whole.
    assert model.generate(["我喜欢"], max_length=8, stop_token_ids=None)[0].startswith("我喜欢")
