"""jieba in TensorFlow ops (`jieba_graph`): the same words as jieba's Python, no Python ops.

The full corpora are compared by `benchmarks/jieba_graph.py`; here a few hundred fixed texts:
real reviews and news, and written cases for what jieba treats specially (Latin letters,
digits and decimals, `%`, symbols, whitespace of every kind, characters outside the BMP).
"""

import re

import numpy as np
import pytest
import tensorflow as tf

from keras_unitscale.datasets import load_chinese_sentiment
from keras_unitscale.datasets.lm_corpora import load_peoples_daily
from keras_unitscale.export import graph
from keras_unitscale.tokenizers import JiebaTokenizer, jieba_graph

# TensorFlow ops and jieba only: no Keras backend in the path, so one pass runs it.
pytestmark = pytest.mark.backend_independent

WRITTEN = [
    "", " ", "\t\n \u3000", "a", "好", "我来到北京清华大学", "他来到了网易杭研大厦",
    "小明硕士毕业于中国科学院计算所，后在日本京都大学深造",
    "工信处女干事每月经过下属科室都要亲口交代24口交换机等技术性器件的安装工作",
    "结果婚的和尚未结过婚的", "这是一个伸手不见五指的黑夜。我叫孙悟空，我爱北京，我爱Python和C++。",
    "iPhone12很好用，v1.2.3版本，价格打了50%的折扣+#&_-x", "3.14abc%%x\t\u3000y 。",
    "AT&T和T恤、B超、IC卡、U盘", "下载速度只有100KB/s，3.5寸屏幕，售价￥1999.00元！！",
    "  首尾有空格  中间\t\t有制表符\n和换行  ", "全角ＡＢＣ１２３和半角ABC123混排",
    "emoji😀在中间😀😀，还有𠮷字", "京东商城的物流很快，第二天就到了。。。",
    "韩冰是一个好人，韩冰韩冰韩冰", "李小福是创新办主任也是云计算方面的专家",
    "哈哈哈哈哈哈哈哈哈哈哈哈哈哈哈哈哈哈哈哈", "abc.def.5.6.7%%a1b2c3", "1.5%的增长率和.5与5.",
    "《红楼梦》、“引号”、（括号）和【方括号】", "\u00a0不换行空格\u2003全角空格\u3000结束",
]


@pytest.fixture(scope="module")
def texts():
    (reviews, _), _, _ = load_chinese_sentiment()
    news, _, _ = load_peoples_daily()
    return WRITTEN + [str(t) for t in reviews[:200]] + [str(t) for t in news[:80]]


def _in_graph(tokenizer, texts):
    words = tf.function(tokenizer.segment)(tf.constant(texts))
    return [[w.decode("utf-8") for w in row] for row in words.to_list()]


@pytest.mark.parametrize("hmm", [False, True])
def test_graph_words_equal_jiebas(texts, hmm):
    tokenizer = JiebaTokenizer(hmm=hmm)
    expected = [tokenizer._split_python(text) for text in texts]
    got = _in_graph(tokenizer, texts)
    for text, a, b in zip(texts, got, expected):
        assert a == b, (text, a, b)
    if hmm:  # the HMM joined unknown characters somewhere: it was exercised
        without = JiebaTokenizer(hmm=False)
        assert any(without._split_python(t) != e for t, e in zip(texts, expected))


def test_user_words_reach_the_graph(texts):
    words = ["深度学习框架", "很喜欢 20 v", "云计算方面 3", "Keras3 100"]
    tokenizer = JiebaTokenizer(user_dictionary=words)
    extra = ["我在学习深度学习框架，很喜欢Keras3", "李小福是云计算方面的专家"]
    sample = extra + texts[:60]
    expected = [tokenizer._split_python(text) for text in sample]
    assert "深度学习框架" in expected[0] and "云计算方面" in expected[1]
    assert _in_graph(tokenizer, sample) == expected


def test_tokenizer_graph_path_has_no_python_ops(texts):
    tokenizer = JiebaTokenizer.from_corpus(texts[:60])
    function = tf.function(tokenizer.tokenize, input_signature=[tf.TensorSpec([None], tf.string)])
    concrete = function.get_concrete_function()
    assert not graph.op_types(concrete) & graph.PYTHON_OPS
    assert "LookupTableFindV2" in graph.op_types(concrete)
    assert concrete(tf.constant(texts[:60])).to_list() == tokenizer(texts[:60])
    dataset = tf.data.Dataset.from_tensor_slices(texts[:8]).batch(4).map(tokenizer)
    assert [row for batch in dataset for row in batch.to_list()] == tokenizer(texts[:8])


def test_whitespace_list_is_pythons():
    assert jieba_graph.WHITESPACE == tuple(c for c in range(0x110000) if chr(c).isspace())
    assert all(re.fullmatch(r"\s", chr(c)) for c in jieba_graph.WHITESPACE)


def test_bad_utf8_and_empty_batches():
    segmenter = JiebaTokenizer().graph_segmenter()
    assert segmenter(tf.constant([], tf.string)).to_list() == []
    with pytest.raises(tf.errors.InvalidArgumentError):
        segmenter(tf.constant([b"\xff\xfe"]))
    with pytest.raises(ValueError, match="`freq` must hold at least one word"):
        jieba_graph.JiebaGraphSegmenter({"好": 0}, 1)
    assert np.isclose(jieba_graph.word_log_probabilities({"好": 1}, 2)["好"], -np.log(2))
