import numpy as np
import pytest
import tensorflow as tf

from keras_unitscale.datasets import load_chinese_sentiment
from keras_unitscale.tokenizers import CharacterTokenizer
from keras_unitscale.tokenizers.vocabulary import SPACE_TOKEN


@pytest.fixture(scope="module")
def reviews():
    (x_train, _), _, _ = load_chinese_sentiment()
    return [str(t) for t in x_train[:800]]


@pytest.fixture(scope="module")
def tokenizer(reviews):
    return CharacterTokenizer.from_corpus(reviews)


def test_round_trip_on_mixed_text(tokenizer):
    text = "  这本书很好， I like it\t\t very much 3D!  "
    ids = tokenizer(text)
    assert isinstance(ids, np.ndarray)
    assert tokenizer.detokenize(ids) == "这本书很好， I like it very much 3D!"
    assert tokenizer.segment("a  b") == ["a", SPACE_TOKEN, "b"]


def test_graph_path_matches_eager_and_has_no_python(tokenizer, reviews):
    texts = reviews[:50] + ["", " \u3000 x\u3000 ", "魑魅魍魉"]
    fn = tf.function(tokenizer.tokenize).get_concrete_function(tf.TensorSpec([None], tf.string))
    assert not [op.type for op in fn.graph.get_operations() if "PyFunc" in op.type]
    assert fn(tf.constant(texts)).to_list() == tokenizer(texts)
    detok = tf.function(tokenizer.detokenize)(fn(tf.constant(texts)))
    assert [t.decode() for t in detok.numpy()] == tokenizer.detokenize(tokenizer(texts))


def test_rare_characters_map_to_unknown(tokenizer):
    unseen = "".join(c for c in "龘龖麤靐齉鱻" if c not in tokenizer.get_vocabulary())
    assert len(unseen) >= 3
    assert tokenizer(unseen + "好").tolist() == [tokenizer.unknown_token_id] * len(unseen) + [
        tokenizer.token_to_id("好")
    ]


def test_tf_data_scalar_and_batched(tokenizer, reviews):
    ds = tf.data.Dataset.from_tensor_slices(reviews[:10])
    scalar = [x.numpy().tolist() for x in ds.map(tokenizer)]
    batched = [row for b in ds.batch(4).map(tokenizer) for row in b.to_list()]
    assert scalar == batched == tokenizer(reviews[:10])


def test_assets_round_trip(tokenizer, tmp_path, reviews):
    tokenizer.save_assets(str(tmp_path))
    restored = CharacterTokenizer.from_config(tokenizer.get_config())
    restored.load_assets(str(tmp_path))
    assert restored(reviews[:5]) == tokenizer(reviews[:5])
