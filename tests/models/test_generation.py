"""Generation: samplers, the compiled step, stopping, and cached decoding equal to recomputing
the full forward pass at every step, for every generative model."""

import keras
import keras_hub
import numpy as np
import pytest

from keras_unitscale.models import CausalLM, Seq2SeqBackbone, Seq2SeqLM
from keras_unitscale.models.backbones import LSTMBackbone, TransformerDecoderBackbone
from keras_unitscale.models.generation import (
    check_max_length,
    check_texts,
    generated_mask,
    get_sampler,
)
from keras_unitscale.preprocessors import CausalLMPreprocessor, Seq2SeqLMPreprocessor
from keras_unitscale.tokenizers import CharacterTokenizer

TEXTS = ["我喜欢这本书", "这本书很好", "猫很好", "你喜欢猫吗"]
LENGTH = 10


def _causal_lm(kind):
    preprocessor = CausalLMPreprocessor(CharacterTokenizer.from_corpus(TEXTS), LENGTH)
    vocab = preprocessor.tokenizer.vocabulary_size()
    if kind == "lstm":
        backbone = LSTMBackbone(vocab, hidden_dim=16, num_layers=2, bidirectional=False)
    else:
        backbone = TransformerDecoderBackbone(
            vocab, num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=32,
            max_sequence_length=LENGTH,
        )
    return CausalLM(backbone, preprocessor)


@pytest.fixture(scope="module")
def transformer_lm():
    keras.utils.set_random_seed(0)
    return _causal_lm("transformer")


def _packed(model, prompts):
    x = model.preprocessor.generate_preprocess(prompts, sequence_length=LENGTH)
    x = {k: keras.ops.convert_to_numpy(v) for k, v in x.items()}
    return x, x["padding_mask"].astype(bool)


def _argmax_without_cache(forward, ids, mask):
    """Greedy decoding by recomputing the full forward pass for every new token."""
    ids = ids.copy()
    for i in range(int(mask.sum(axis=1).min()), ids.shape[1]):
        logits = keras.ops.convert_to_numpy(forward(ids))
        ids[:, i] = np.where(mask[:, i], ids[:, i], logits[:, i - 1].argmax(-1))
    return ids


def test_get_sampler():
    assert isinstance(get_sampler("greedy"), keras_hub.samplers.GreedySampler)
    assert isinstance(get_sampler("top_p"), keras_hub.samplers.TopPSampler)
    sampler = keras_hub.samplers.TopKSampler(k=3)
    assert get_sampler(sampler) is sampler
    with pytest.raises(ValueError, match="sampler"):
        get_sampler("beam")
    with pytest.raises(ValueError, match="sampler"):
        get_sampler(3)


def test_generated_mask_stops_after_the_first_stop_token_past_the_prompt():
    ids = np.array([[2, 3, 7, 3, 9], [2, 5, 6, 7, 8]])
    prompt = np.array([[1, 1, 0, 0, 0], [1, 0, 0, 0, 0]], bool)
    mask = keras.ops.convert_to_numpy(generated_mask(ids, prompt, (3,)))
    # Row 0: the 3 inside the prompt does not count; the one at position 3 does.
    assert mask.tolist() == [[True] * 4 + [False], [True] * 5]
    assert keras.ops.convert_to_numpy(generated_mask(ids, prompt, None)).all()


def test_checks():
    assert check_texts("猫") == (["猫"], True)
    assert check_texts(np.array(["猫", "狗"])) == (["猫", "狗"], False)
    for bad in ([], None, 3, ["a", None]):
        with pytest.raises(ValueError):
            check_texts(bad)
    assert check_max_length(8, 3, limit=8) == 8
    for length in (3, 2, True, 2.5, 9):
        with pytest.raises(ValueError, match="max_length"):
            check_max_length(length, 3, limit=8)


@pytest.mark.parametrize("kind", ["transformer", "lstm"])
def test_causal_lm_cache_equals_recomputation(kind, transformer_lm):
    model = transformer_lm if kind == "transformer" else _causal_lm(kind)
    x, mask = _packed(model, ["我", "这本书", "猫很"])
    ids = x["token_ids"]
    cached = model.generate(x, stop_token_ids=None)
    expected = _argmax_without_cache(
        lambda t: model({"token_ids": t, "padding_mask": np.ones_like(t)}), ids, mask
    )
    np.testing.assert_array_equal(cached["token_ids"], expected)
    assert cached["padding_mask"].all()


def test_seq2seq_cache_equals_recomputation():
    zh, en = ["我爱猫", "你好吗", "他们去学校"], ["i love cats", "how are you", "to school"]
    preprocessor = Seq2SeqLMPreprocessor(
        CharacterTokenizer.from_corpus(zh), CharacterTokenizer.from_corpus(en), 8, LENGTH
    )
    backbone = Seq2SeqBackbone(
        preprocessor.tokenizer.vocabulary_size(), num_layers=2, num_heads=2, hidden_dim=16,
        intermediate_dim=32, max_sequence_length=LENGTH,
        decoder_vocabulary_size=preprocessor.decoder_tokenizer.vocabulary_size(),
    )
    model = Seq2SeqLM(backbone, preprocessor)
    x = preprocessor.generate_preprocess(
        {"encoder_text": zh, "decoder_text": ["", "how", "t"]}, decoder_sequence_length=LENGTH
    )
    x = {k: keras.ops.convert_to_numpy(v) for k, v in x.items()}
    mask = x["decoder_padding_mask"].astype(bool)
    cached = model.generate(x, stop_token_ids=None)

    def forward(ids):
        return model({**x, "decoder_token_ids": ids, "decoder_padding_mask": np.ones_like(ids)})

    expected = _argmax_without_cache(forward, x["decoder_token_ids"], mask)
    np.testing.assert_array_equal(cached["decoder_token_ids"], expected)


def test_generation_stops_when_every_sequence_has_ended(transformer_lm):
    model = transformer_lm
    x, _ = _packed(model, ["我喜", "这本", "猫很"])
    full = model.generate(x, stop_token_ids=None)["token_ids"]
    stop = tuple(int(t) for t in set(full[:, 3].tolist()))  # each row's first new token
    out = model.generate(x, stop_token_ids=stop)
    np.testing.assert_array_equal(out["token_ids"][:, :4], full[:, :4])
    # The loop ended after one step: later positions still hold the prompt's padding.
    assert (out["token_ids"][:, 4:] == model.preprocessor.tokenizer.pad_token_id).all()
    assert out["padding_mask"].tolist() == [[True] * 4 + [False] * (LENGTH - 4)] * 3


def test_one_compiled_function_per_sampler(transformer_lm):
    model = transformer_lm
    sampler = get_sampler("greedy")
    function = model.make_generate_function(sampler)
    assert model.make_generate_function(sampler) is function
    model.generate(["我", "猫", "这"], sampler=sampler)
    model.generate(["你", "这", "猫很"], sampler=sampler)
    if keras.config.backend() == "tensorflow":
        assert function.experimental_get_tracing_count() == 1
        assert function._jit_compile
    else:
        assert function.jitted._cache_size() == 1


def test_random_samplers_advance_their_seed(transformer_lm):
    sampler = keras_hub.samplers.TopKSampler(k=5, seed=1)
    before = keras.ops.convert_to_numpy(sampler.variables[0])
    transformer_lm.generate(["我", "猫", "这"], sampler=sampler)
    after = keras.ops.convert_to_numpy(sampler.variables[0])
    assert not np.array_equal(before, after)
