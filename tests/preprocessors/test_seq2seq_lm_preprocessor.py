import numpy as np
import pytest
import tensorflow as tf

from keras_unitscale.datasets import load_zh_en_pairs
from keras_unitscale.preprocessors import Seq2SeqLMPreprocessor
from keras_unitscale.tokenizers import JiebaTokenizer, train_word_piece

ENC, DEC = 16, 20


@pytest.fixture(scope="module")
def pairs():
    (zh, en), _, _ = load_zh_en_pairs()
    return [str(t) for t in zh[:200]], [str(t) for t in en[:200]]


@pytest.fixture(scope="module")
def tokenizers(pairs):
    return JiebaTokenizer.from_corpus(pairs[0]), train_word_piece(pairs[1], 800)


@pytest.fixture()
def preprocessor(tokenizers):
    return Seq2SeqLMPreprocessor(
        *tokenizers, encoder_sequence_length=ENC, decoder_sequence_length=DEC
    )


def test_outputs_shift_and_weights(preprocessor, tokenizers, pairs, numpy_tree):
    zh_tok, en_tok = tokenizers
    x, y, w = numpy_tree(preprocessor({"encoder_text": pairs[0][:4], "decoder_text": pairs[1][:4]}))
    assert sorted(x) == [
        "decoder_padding_mask",
        "decoder_token_ids",
        "encoder_padding_mask",
        "encoder_token_ids",
    ]
    assert x["encoder_token_ids"].shape == (4, ENC) and x["decoder_token_ids"].shape == (4, DEC)
    assert y.shape == w.shape == (4, DEC) and w.dtype == np.float32
    assert (x["encoder_token_ids"][:, 0] == zh_tok.start_token_id).all()
    assert (x["decoder_token_ids"][:, 0] == en_tok.start_token_id).all()
    assert np.array_equal(y[:, :-1], x["decoder_token_ids"][:, 1:])
    for row_y, row_w, text in zip(y, w, pairs[1][:4]):
        ids = list(map(int, en_tok(text)))[: DEC - 1]
        assert row_y[: len(ids) + 1].tolist() == ids + [en_tok.end_token_id]
        assert row_w.sum() == len(ids) + 1
        assert not row_y[int(row_w.sum()) :].any()


def test_tf_data_matches_eager(preprocessor, pairs, numpy_tree):
    data = {"encoder_text": pairs[0][:12], "decoder_text": pairs[1][:12]}
    eager = numpy_tree(preprocessor(data))
    batched = [
        numpy_tree(b) for b in tf.data.Dataset.from_tensor_slices(data).batch(5).map(preprocessor)
    ]
    for i, part in enumerate(("x", "y", "w")):
        got = [b[i] for b in batched]
        if part == "x":
            for key in eager[0]:
                assert np.array_equal(np.concatenate([g[key] for g in got]), eager[0][key])
        else:
            assert np.array_equal(np.concatenate(got), eager[i])
    scalar = next(iter(tf.data.Dataset.from_tensor_slices(data).map(preprocessor)))
    assert np.array_equal(numpy_tree(scalar[1]), eager[1][0])


def test_generation_helpers(preprocessor, tokenizers, pairs, numpy_tree):
    en_tok = tokenizers[1]
    prompt = numpy_tree(preprocessor.generate_preprocess(pairs[0][:2]))
    assert prompt["decoder_token_ids"][:, 0].tolist() == [en_tok.start_token_id] * 2
    assert prompt["decoder_padding_mask"].sum(axis=1).tolist() == [1, 1]
    assert preprocessor.generate_postprocess(prompt) == ["", ""]
    # Teacher-forced labels read back as the (lowercased WordPiece) target text.
    # Three pairs whose target fits in the labels whole (its tokens and [END]).
    fit = [i for i, t in enumerate(pairs[1]) if len(en_tok(t)) < DEC][:3]
    sources, targets = [pairs[0][i] for i in fit], [pairs[1][i] for i in fit]
    _, y, _ = preprocessor({"encoder_text": sources, "decoder_text": targets})
    expected = [en_tok.detokenize(en_tok(t)) for t in targets]
    assert preprocessor.detokenize(y) == expected
    graph = tf.function(preprocessor.detokenize)(tf.constant(numpy_tree(y)))
    assert [t.decode() for t in graph.numpy()] == expected
    # A decoder prefix continues without [END].
    prefix = numpy_tree(
        preprocessor.generate_preprocess({"encoder_text": "你好", "decoder_text": "hello"})
    )
    assert en_tok.end_token_id not in prefix["decoder_token_ids"].tolist()


def test_bad_inputs(preprocessor, tokenizers):
    with pytest.raises(ValueError, match="`x` must be a dict"):
        preprocessor("你好")
    with pytest.raises(ValueError, match="exactly the keys"):
        preprocessor({"encoder_text": "你好"})
    with pytest.raises(ValueError, match="makes `y`"):
        preprocessor({"encoder_text": "你好", "decoder_text": "hi"}, np.array([1]))
    with pytest.raises(TypeError, match=r"x\['decoder_text'\]"):
        preprocessor({"encoder_text": "你好", "decoder_text": None})
    with pytest.raises(TypeError, match="decoder_tokenizer"):
        Seq2SeqLMPreprocessor(tokenizers[0], decoder_tokenizer="english")
    with pytest.raises(ValueError, match="decoder_sequence_length"):
        Seq2SeqLMPreprocessor(tokenizers[0], decoder_sequence_length=1)


def test_single_tokenizer_and_keras_file_round_trip(
    tokenizers, pairs, keras_file_round_trip, numpy_tree
):
    both = Seq2SeqLMPreprocessor(
        *tokenizers, encoder_sequence_length=ENC, decoder_sequence_length=DEC
    )
    one = Seq2SeqLMPreprocessor(
        tokenizers[0], encoder_sequence_length=ENC, decoder_sequence_length=DEC
    )
    assert one.decoder_tokenizer is one.tokenizer and one.get_config()["decoder_tokenizer"] is None
    data = {"encoder_text": pairs[0][:3], "decoder_text": pairs[1][:3]}
    for original in (both, one):
        restored = keras_file_round_trip(original)
        assert type(restored.decoder_tokenizer) is type(original.decoder_tokenizer)
        a, b = numpy_tree(original(data)), numpy_tree(restored(data))
        assert all(np.array_equal(a[0][k], b[0][k]) for k in a[0])
        assert np.array_equal(a[1], b[1]) and np.array_equal(a[2], b[2])
