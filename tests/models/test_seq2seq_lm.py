"""Seq2SeqLM and Seq2SeqBackbone: raw-pair training, translation, saving and bad input."""

import keras
import numpy as np
import pytest

from keras_unitscale.models import Seq2SeqBackbone, Seq2SeqLM
from keras_unitscale.preprocessors import Seq2SeqLMPreprocessor
from keras_unitscale.tokenizers import CharacterTokenizer

ZH = ["我爱猫", "你好", "我们去学校", "他喜欢书", "猫很好"] * 6
EN = ["i love cats", "hello", "we go to school", "he likes books", "cats are good"] * 6
PAIRS = {"encoder_text": ZH, "decoder_text": EN}


def _model(tie_weights=True):
    preprocessor = Seq2SeqLMPreprocessor(
        CharacterTokenizer.from_corpus(ZH), CharacterTokenizer.from_corpus(EN), 8, 18
    )
    backbone = Seq2SeqBackbone(
        preprocessor.tokenizer.vocabulary_size(), num_layers=1, num_heads=2, hidden_dim=32,
        intermediate_dim=64, max_sequence_length=20,
        decoder_vocabulary_size=preprocessor.decoder_tokenizer.vocabulary_size(),
    )
    return Seq2SeqLM(backbone, preprocessor, tie_weights=tie_weights)


@pytest.fixture(scope="module")
def trained():
    keras.utils.set_random_seed(0)
    model = _model()
    model.compile()  # u-muP's AdamW at the default base rate
    losses = model.fit(PAIRS, batch_size=10, epochs=20, verbose=0).history["loss"]
    return model, losses[0], losses[-1]


def test_fit_on_raw_pairs_lowers_the_loss(trained):
    _, before, after = trained
    assert np.isfinite(after) and after < 0.8 * before, (before, after)


def test_translate_strings(trained):
    model, _, _ = trained
    many = model.generate(["我爱猫", "你好"])
    assert len(many) == 2 and all(isinstance(t, str) for t in many)
    assert model.generate(["我爱猫", "你好"]) == many  # greedy: deterministic
    assert many[0] == "i love cats", many  # learnt from 30 pairs
    assert len(model.generate(["我爱猫", "你好"], sampler="top_k")) == 2


def test_decoder_prefix_is_continued(trained):
    model, _, _ = trained
    prompts = {"encoder_text": ["我爱猫", "你好"], "decoder_text": ["we", "he"]}
    out = model.generate(prompts)
    assert out[0].startswith("we") and out[1].startswith("he")
    stripped = model.generate(prompts, strip_prompt=True)
    assert out[0] == "we" + stripped[0]
    assert isinstance(model.generate("我爱猫"), str)


def test_long_prompts_are_cut_as_keras_hub_cuts_them(trained):
    """A decoder prompt too long for `max_length` keeps its end (`[START]`, the last
    `max_length - 2` tokens, one to generate), as CausalLM's; a source longer than the encoder
    keeps its start and `[END]`, as in training. Neither is an error."""
    model, _, _ = trained
    packed = model.preprocessor.generate_preprocess(
        {"encoder_text": ["我们去学校我爱猫你好"], "decoder_text": ["we go to school"]},
        decoder_sequence_length=6,
    )
    tokenizer = model.preprocessor.decoder_tokenizer
    ids = keras.ops.convert_to_numpy(packed["decoder_token_ids"])[0].tolist()
    assert ids[:5] == [tokenizer.start_token_id] + tokenizer(["hool"])[0]
    encoder_ids = keras.ops.convert_to_numpy(packed["encoder_token_ids"])[0].tolist()
    source = model.preprocessor.tokenizer(["我们去学校我"])[0]
    assert encoder_ids == [model.preprocessor.tokenizer.start_token_id] + source + [
        model.preprocessor.tokenizer.end_token_id]
    long = {"encoder_text": ["我们去学校我爱猫你好", "你好"],
            "decoder_text": ["we go to school", "hello"]}
    cut = {"encoder_text": ["我们去学校我", "你好"], "decoder_text": ["hool", "hello"[-4:]]}
    out = model.generate(long, max_length=6, strip_prompt=True)
    assert out == model.generate(cut, max_length=6, strip_prompt=True)
    assert all(len(t) <= 1 for t in out), out  # one position generated (or [END])


def test_untied_readout_has_its_own_kernel():
    tied, untied = _model(), _model(tie_weights=False)
    assert len(untied.weights) == len(tied.weights) + 1


def test_keras_round_trip_reproduces_outputs(trained, tmp_path):
    model, _, _ = trained
    path = str(tmp_path / "seq2seq.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    assert isinstance(restored, Seq2SeqLM)
    sample = {"encoder_text": ZH[:3], "decoder_text": EN[:3]}
    np.testing.assert_allclose(
        model.predict(sample, verbose=0), restored.predict(sample, verbose=0), atol=1e-5
    )
    assert restored.generate(ZH[:2]) == model.generate(ZH[:2])


def test_backbone_config_round_trip():
    backbone = _model().backbone
    clone = Seq2SeqBackbone.from_config(backbone.get_config())
    assert clone.get_config() == backbone.get_config()
    assert len(clone.weights) == len(backbone.weights)


def test_bad_input(trained):
    model, _, _ = trained
    with pytest.raises(ValueError, match="empty"):
        model.generate([])
    with pytest.raises(ValueError, match="encoder_text"):
        model.generate({"decoder_text": ["we"]})
    with pytest.raises(ValueError, match="same length"):
        model.generate({"encoder_text": ["我", "你"], "decoder_text": ["we"]})
    with pytest.raises(ValueError, match="longer than the longest prompt"):
        model.generate("我", max_length=1)  # not even [START] and one token
    with pytest.raises(ValueError, match="exceeds the 20 positions"):
        model.generate("我", max_length=21)
    with pytest.raises(ValueError, match="must hold strings"):
        model.generate([1, 2])
    with pytest.raises(ValueError, match="pass only `x`"):
        model.fit(PAIRS, [0] * len(ZH), verbose=0)
    with pytest.raises(ValueError, match="divisible"):
        Seq2SeqBackbone(10, 1, num_heads=3, hidden_dim=16, intermediate_dim=8)
