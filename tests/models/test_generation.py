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
    prefill,
    prefill_lengths,
)
from keras_unitscale.preprocessors import CausalLMPreprocessor, Seq2SeqLMPreprocessor
from keras_unitscale.tokenizers import CharacterTokenizer

TEXTS = ["我喜欢这本书", "这本书很好", "猫很好", "你喜欢猫吗"]
LENGTH = 10


def _causal_lm(kind, num_layers=2, max_sequence_length=LENGTH):
    preprocessor = CausalLMPreprocessor(CharacterTokenizer.from_corpus(TEXTS), LENGTH)
    vocab = preprocessor.tokenizer.vocabulary_size()
    if kind == "lstm":
        backbone = LSTMBackbone(vocab, hidden_dim=16, num_layers=num_layers, bidirectional=False)
    else:
        backbone = TransformerDecoderBackbone(
            vocab, num_layers=num_layers, num_heads=2, hidden_dim=16, intermediate_dim=32,
            max_sequence_length=max_sequence_length,
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
    """Greedy decoding by recomputing the full forward pass for every new token.

    `forward` goes through `predict_on_batch`: one compiled function for the fixed shape
    instead of a full eager pass per position."""
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

    def forward(t):
        return model.predict_on_batch({"token_ids": t, "padding_mask": np.ones_like(t)})

    expected = _argmax_without_cache(forward, ids, mask)
    np.testing.assert_array_equal(cached["token_ids"], expected)
    assert cached["padding_mask"].all()


def _seq2seq_lm(length, tie_weights=True):
    zh, en = ["我爱猫", "你好吗", "他们去学校"], ["i love cats", "how are you", "to school"]
    preprocessor = Seq2SeqLMPreprocessor(
        CharacterTokenizer.from_corpus(zh), CharacterTokenizer.from_corpus(en), 8, length
    )
    backbone = Seq2SeqBackbone(
        preprocessor.tokenizer.vocabulary_size(), num_layers=2, num_heads=2, hidden_dim=16,
        intermediate_dim=32, max_sequence_length=length,
        decoder_vocabulary_size=preprocessor.decoder_tokenizer.vocabulary_size(),
    )
    return Seq2SeqLM(backbone, preprocessor, tie_weights=tie_weights), zh


def _seq2seq_matches_recomputation(model, zh, decoder_text, length):
    x = model.preprocessor.generate_preprocess(
        {"encoder_text": zh, "decoder_text": decoder_text}, decoder_sequence_length=length
    )
    x = {k: keras.ops.convert_to_numpy(v) for k, v in x.items()}
    mask = x["decoder_padding_mask"].astype(bool)
    cached = model.generate(x, stop_token_ids=None)

    def forward(ids):
        return model.predict_on_batch(
            {**x, "decoder_token_ids": ids, "decoder_padding_mask": np.ones_like(ids)})

    expected = _argmax_without_cache(forward, x["decoder_token_ids"], mask)
    np.testing.assert_array_equal(cached["decoder_token_ids"], expected)
    return int(mask.sum(axis=1).min())


def test_seq2seq_cache_equals_recomputation():
    model, zh = _seq2seq_lm(LENGTH)
    _seq2seq_matches_recomputation(model, zh, ["", "how", "t"], LENGTH)


def test_prefill_runs_the_shortest_prefix_that_covers_the_prompts():
    assert prefill_lengths(64) == [16, 64]
    assert prefill_lengths(1001) == [250, 1001]
    assert prefill_lengths(31) == [31]
    assert prefill_lengths(31, shortest=4) == [7, 31]
    ids = np.arange(2 * 64, dtype="int32").reshape(2, 64)

    def run(prefix):
        # The hidden states say which positions ran; the second output, how many.
        return keras.ops.cast(prefix[..., None], "float32"), keras.ops.convert_to_tensor(
            prefix.shape[1], "int32"
        )

    for index, expected in [(0, 16), (1, 16), (15, 16), (16, 16), (17, 64), (40, 64), (64, 64)]:
        hidden, size = prefill(run, ids, keras.ops.convert_to_tensor(index, "int32"))
        assert int(keras.ops.convert_to_numpy(size)) == expected, index
        hidden = keras.ops.convert_to_numpy(hidden)
        assert hidden.shape == (2, 64, 1)
        np.testing.assert_array_equal(hidden[:, :expected, 0], ids[:, :expected])
        assert (hidden[:, expected:] == 0).all()


@pytest.mark.parametrize("task", ["causal_lm", "seq2seq_lm"])
def test_cache_from_a_prefix_pass_equals_recomputation(task):
    # 32 positions: the prompt pass runs 8 or 32 of them, by the shortest prompt. Untied
    # readouts: with a tied one, a random decoder mostly repeats its input token whatever the
    # cache holds, and the greedy tokens could not tell a wrong cache.
    length = 32
    keras.utils.set_random_seed(0)
    if task == "seq2seq_lm":
        model, zh = _seq2seq_lm(length, tie_weights=False)
        for decoder_text, shortest in [(["", "how are you", "i"], 1),
                                       (["how are you i love", "how are you i love cats"], 19),
                                       (["how are you i love cats to", "i love cats how are"], 20)]:
            n = _seq2seq_matches_recomputation(model, zh[-len(decoder_text):], decoder_text,
                                               length)
            assert n == shortest
        return
    preprocessor = CausalLMPreprocessor(CharacterTokenizer.from_corpus(TEXTS), length)
    backbone = TransformerDecoderBackbone(
        preprocessor.tokenizer.vocabulary_size(), num_layers=2, num_heads=2, hidden_dim=16,
        intermediate_dim=32, max_sequence_length=length,
    )
    model = CausalLM(backbone, preprocessor, tie_weights=False)
    long = "".join(TEXTS)
    for prompts, shortest in [(["我", long[:20], "猫很"], 2), ([long[:11], long[3:20]], 12),
                              ([long[:24], long[1:19]], 19)]:
        x = model.preprocessor.generate_preprocess(prompts, sequence_length=length)
        x = {k: keras.ops.convert_to_numpy(v) for k, v in x.items()}
        mask = x["padding_mask"].astype(bool)
        assert mask.sum(axis=1).min() == shortest
        cached = model.generate(x, stop_token_ids=None)
        expected = _argmax_without_cache(
            lambda t: model.predict_on_batch({"token_ids": t, "padding_mask": np.ones_like(t)}),
            x["token_ids"], mask,
        )
        np.testing.assert_array_equal(cached["token_ids"], expected)


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


@pytest.mark.parametrize("kind", ["transformer", "lstm"])
def test_generate_reuses_one_compiled_shape_across_batch_sizes_and_lengths(kind):
    keras.utils.set_random_seed(0)
    model = _causal_lm(kind, num_layers=1, max_sequence_length=40)
    sampler = get_sampler("greedy")
    function = model.make_generate_function(sampler)
    shapes = []
    model._generate_functions = [(sampler, lambda x, stop: shapes.append(
        x["token_ids"].shape) or function(x, stop))]
    for prompts, max_length in [(["我", "猫", "这"], 20), (TEXTS, 24), (["你喜"], 9)]:
        texts = model.generate(prompts, max_length=max_length, sampler=sampler,
                               stop_token_ids=None)
        # The same as decoding the unpadded batch at exactly `max_length` (the packed path
        # is not bucketed).
        packed = model.preprocessor.generate_preprocess(prompts, sequence_length=max_length)
        exact = model.generate({k: keras.ops.convert_to_numpy(v) for k, v in packed.items()},
                               sampler=sampler, stop_token_ids=None)
        assert texts == list(model.preprocessor.generate_postprocess(exact))
    # Batches of 3 and 4 share the bucket of 4 rows, lengths 20 and 24 the bucket of 32
    # positions; a single prompt of 9 positions is its own bucket of 1 x 32.
    assert shapes[::2] == [(4, 32), (4, 32), (1, 32)]
    assert shapes[1::2] == [(3, 20), (4, 24), (1, 9)]
