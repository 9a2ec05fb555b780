import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_unitscale.datasets import load_chinese_sentiment
from keras_unitscale.tokenizers import JiebaTokenizer
from keras_unitscale.tokenizers import jieba_segmenter


@pytest.fixture(scope="module")
def reviews():
    (x_train, _), _, _ = load_chinese_sentiment()
    return [str(t) for t in x_train[:1500]]


@pytest.fixture(scope="module")
def tokenizer(reviews):
    return JiebaTokenizer.from_corpus(reviews)


def _expected_text(text):
    """The documented round trip: whitespace runs become one space, ends stripped."""
    return re.sub(r"\s+", " ", text).strip()


def test_special_tokens_come_first(tokenizer):
    assert tokenizer.get_vocabulary()[:5] == ["[PAD]", "[UNK]", "[START]", "[END]", "[CLS]"]
    ids = (tokenizer.pad_token_id, tokenizer.unknown_token_id, tokenizer.start_token_id)
    assert ids + (tokenizer.end_token_id, tokenizer.cls_token_id) == (0, 1, 2, 3, 4)
    assert tokenizer.vocabulary_size() == len(tokenizer.get_vocabulary()) > 5000


def test_round_trip_on_real_reviews(tokenizer, reviews):
    for text in reviews[:300]:
        ids = tokenizer(text)
        assert isinstance(ids, np.ndarray) and ids.dtype == np.int32
        assert tokenizer.unknown_token_id not in ids.tolist()
        assert tokenizer.detokenize(ids) == _expected_text(text)


def test_batched_eager_call_returns_lists(tokenizer, reviews):
    batch = tokenizer(reviews[:3])
    assert [list(map(int, tokenizer(t))) for t in reviews[:3]] == batch
    assert tokenizer.detokenize(batch) == [_expected_text(t) for t in reviews[:3]]


def test_unknown_words_map_to_unknown_id(tokenizer):
    text = "魑魅魍魉xyzzyplugh很好"
    words = tokenizer.segment(text)
    ids = tokenizer(text).tolist()
    assert len(ids) == len(words)  # Nothing dropped.
    assert ids.count(tokenizer.unknown_token_id) >= 2
    assert tokenizer.token_to_id("很") in ids


def test_vocabulary_options_and_determinism(reviews):
    small = JiebaTokenizer.from_corpus(reviews[:300], min_frequency=3, max_size=200)
    again = JiebaTokenizer.from_corpus(reviews[:300], min_frequency=3, max_size=200)
    assert small.get_vocabulary() == again.get_vocabulary()
    assert small.vocabulary_size() == 200
    counts = {}
    for text in reviews[:300]:
        for word in small.segment(text):
            counts[word] = counts.get(word, 0) + 1
    assert all(counts[w] >= 3 for w in small.get_vocabulary()[5:])


@pytest.mark.parametrize("batched", [False, True])
def test_tf_data_matches_eager(tokenizer, reviews, batched):
    texts = reviews[:40]
    ds = tf.data.Dataset.from_tensor_slices(texts)
    if batched:
        ds = ds.batch(16)
        got = [row for batch in ds.map(tokenizer) for row in batch.to_list()]
    else:
        got = [x.numpy().tolist() for x in ds.map(tokenizer)]
    assert got == [tokenizer(t).tolist() for t in texts]
    detok = ds.map(tokenizer).map(tokenizer.detokenize)
    texts_back = [t.decode() for b in detok for t in (b.numpy() if batched else [b.numpy()])]
    assert texts_back == [_expected_text(t) for t in texts]


def test_presegmented_lookup_runs_purely_in_graph(tokenizer, reviews):
    preseg = JiebaTokenizer(vocabulary=tokenizer.get_vocabulary(), presegmented=True)
    texts = reviews[:20]
    spaced = [" ".join(tokenizer.segment(t)) for t in texts]
    assert preseg(spaced) == tokenizer(texts)
    function = tf.function(preseg.tokenize).get_concrete_function(tf.TensorSpec([None], tf.string))
    op_types = {op.type for op in function.graph.get_operations()}
    assert not {t for t in op_types if "PyFunc" in t}, op_types
    out = function(tf.constant(spaced))
    assert out.to_list() == tokenizer(texts)
    # Extra ASCII whitespace is a separator, not a word.
    assert preseg("  酒店 \t 不错\n").tolist() == [
        tokenizer.token_to_id("酒店"),
        tokenizer.token_to_id("不错"),
    ]


def test_user_dictionary_is_isolated_per_tokenizer(tokenizer):
    text = "我在学习深度学习框架"
    plain = JiebaTokenizer(vocabulary=tokenizer.get_vocabulary())
    custom = JiebaTokenizer(vocabulary=tokenizer.get_vocabulary(), user_dictionary=["深度学习框架"])
    assert "深度学习框架" in custom.segment(text)
    assert "深度学习框架" not in plain.segment(text)
    # jieba's shared main dictionary and later tokenizers are untouched.
    assert "深度学习框架" not in jieba_segmenter.get_segmenter(()).FREQ
    assert "深度学习框架" not in JiebaTokenizer(
        vocabulary=["[PAD]", "[UNK]", "[START]", "[END]", "[CLS]"]
    ).segment(text)
    # The user word is unknown to the vocabulary, so it is one [UNK], not an error.
    assert custom(text).tolist().count(custom.unknown_token_id) == 1


def test_user_dictionary_file_and_errors(tmp_path):
    path = tmp_path / "user.txt"
    path.write_text("深度学习框架 10 n\n\n机器学习\n", encoding="utf-8")
    assert jieba_segmenter.parse_user_dictionary(str(path)) == (
        ("深度学习框架", 10, "n"),
        ("机器学习", None, None),
    )
    with pytest.raises(ValueError, match="frequency must be >= 1"):
        JiebaTokenizer(user_dictionary=["深度学习 0"])
    with pytest.raises(ValueError, match="without spaces"):
        JiebaTokenizer(user_dictionary=["深度 学习 框架 x y"])
    bad = tmp_path / "bad.txt"
    bad.write_bytes("好词\n".encode() + b"\xff\xfe\n")
    with pytest.raises(ValueError, match=r"bad.txt, line 2: not valid UTF-8"):
        JiebaTokenizer(user_dictionary=str(bad))
    with pytest.raises(TypeError, match="user_dictionary"):
        JiebaTokenizer(user_dictionary=3)


def test_bad_inputs_raise_clear_errors(tokenizer):
    with pytest.raises(TypeError, match="`inputs` must be a string"):
        tokenizer(None)
    with pytest.raises(TypeError, match="`inputs` must be a string"):
        tokenizer(3)
    with pytest.raises(TypeError, match="element 1"):
        tokenizer(["很好", 3])
    with pytest.raises(ValueError, match="UTF-8"):
        tokenizer(b"\xff\xfe")
    with pytest.raises(ValueError, match="shape"):
        tokenizer(np.array([["a"]]))
    with pytest.raises(TypeError, match="string tensor"):
        tf.function(tokenizer.tokenize)(tf.constant([1, 2]))
    with pytest.raises(ValueError, match="outside"):
        tokenizer.detokenize([1, 10**9])
    with pytest.raises(TypeError, match="integer"):
        tokenizer.detokenize([1.5, 2.0])
    with pytest.raises(ValueError, match="No vocabulary"):
        JiebaTokenizer()("很好")
    with pytest.raises(TypeError, match="`hmm` must be a bool"):
        JiebaTokenizer(hmm="yes")


def test_empty_inputs_are_empty_outputs(tokenizer):
    assert tokenizer("").shape == (0,)
    assert tokenizer("   ").shape == (0,)
    assert tokenizer([]) == []
    assert tokenizer(["", "好"])[0] == []
    assert tokenizer.detokenize([]) == ""
    ragged = tf.function(tokenizer.tokenize)(tf.constant(["", "好"]))
    assert ragged.to_list()[0] == []


def test_assets_and_config_round_trip(tokenizer, tmp_path, reviews):
    custom = JiebaTokenizer(
        vocabulary=tokenizer.get_vocabulary(), user_dictionary=["深度学习框架 5"], hmm=False
    )
    custom.save_assets(str(tmp_path))
    config = custom.get_config()
    assert config["vocabulary"] is None and config["hmm"] is False
    restored = JiebaTokenizer.from_config(config)
    restored.load_assets(str(tmp_path))
    assert restored.get_vocabulary() == custom.get_vocabulary()
    assert restored.user_words == ["深度学习框架"]
    for text in reviews[:20] + ["我在学习深度学习框架"]:
        assert restored(text).tolist() == custom(text).tolist()
    clone = keras.layers.deserialize(keras.layers.serialize(custom))
    assert isinstance(clone, JiebaTokenizer) and clone.get_config() == config
