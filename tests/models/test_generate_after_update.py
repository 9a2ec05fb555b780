"""`generate()` reads the weights as they are now: after `set_weights` and after `fit`, its
compiled decoding loop must not keep the weights it was first traced with."""

import keras
import numpy as np

from keras_unitscale.models import CausalLM
from keras_unitscale.models.backbones import TransformerDecoderBackbone
from keras_unitscale.preprocessors import CausalLMPreprocessor
from keras_unitscale.tokenizers import CharacterTokenizer

TEXTS = ["我喜欢这本书", "这本书很好", "我很喜欢猫", "猫很好", "你喜欢这本书吗"] * 4
PROMPTS = ["我", "这本", "猫很"]


def _model(seed):
    keras.utils.set_random_seed(seed)
    preprocessor = CausalLMPreprocessor(CharacterTokenizer.from_corpus(TEXTS), sequence_length=12)
    backbone = TransformerDecoderBackbone(
        preprocessor.tokenizer.vocabulary_size(), num_layers=1, num_heads=2, hidden_dim=32,
        intermediate_dim=64, max_sequence_length=16,
    )
    # Untied: a random tied readout mostly repeats its input token, which would hide a
    # change of weights.
    return CausalLM(backbone, preprocessor, tie_weights=False)


def test_generate_follows_set_weights():
    model, other = _model(0), _model(1)
    first = model.generate(PROMPTS, max_length=10)
    expected = other.generate(PROMPTS, max_length=10)
    assert first != expected  # the two draws really decode differently
    model.set_weights(other.get_weights())
    assert model.generate(PROMPTS, max_length=10) == expected


def test_generate_after_fit_uses_the_trained_weights():
    model = _model(0)
    before = model.generate(PROMPTS, max_length=10)
    model.compile()
    model.fit(TEXTS, batch_size=10, epochs=8, verbose=0)
    after = model.generate(PROMPTS, max_length=10)
    # A fresh model holding the trained weights decodes the same: generate() read them.
    fresh = _model(2)
    fresh.set_weights(model.get_weights())
    assert after == fresh.generate(PROMPTS, max_length=10)
    assert after != before
    # Trained on TEXTS, it continues the prompt "这本" with text seen in training.
    continuation = after[1]
    assert isinstance(continuation, str) and continuation.startswith("这本")
    assert any(continuation[:3] == text[:3] for text in TEXTS), continuation
    assert np.all([isinstance(t, str) for t in after])


def test_top_p_and_random_samplers_through_generate():
    import keras_hub

    model = _model(0)
    model.compile()
    model.fit(TEXTS, batch_size=10, epochs=8, verbose=0)
    greedy = model.generate(PROMPTS, max_length=10)
    # Top-p with a tiny p keeps only the most likely token at every step: greedy decoding.
    model.compile(sampler=keras_hub.samplers.TopPSampler(p=1e-6))
    assert model.generate(PROMPTS, max_length=10) == greedy
    # Random sampling at a high temperature: texts made of the vocabulary, prompts kept, and
    # not all equal to the greedy ones over a few seeded draws.
    vocabulary = set("".join(TEXTS))
    draws = []
    for seed in range(3):
        model.compile(sampler=keras_hub.samplers.RandomSampler(temperature=5.0, seed=seed))
        texts = model.generate(PROMPTS, max_length=10)
        for prompt, text in zip(PROMPTS, texts):
            # Any token may be drawn, the unknown token too (written "[UNK]").
            assert text.startswith(prompt) and set(text.replace("[UNK]", "")) <= vocabulary, text
        draws.append(texts)
    assert any(d != greedy for d in draws)
    model.compile(sampler="top_p")  # by name too
    assert all(t.startswith(p) for p, t in zip(PROMPTS, model.generate(PROMPTS, max_length=10)))
