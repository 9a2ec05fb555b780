import pytest

from keras_unitscale.tokenizers import SPECIAL_TOKENS, build_vocabulary
from keras_unitscale.tokenizers.vocabulary import (
    SPACE_TOKEN,
    check_vocabulary,
    read_vocabulary_file,
    write_vocabulary_file,
)


def test_order_is_specials_then_count_then_token():
    vocab = build_vocabulary([["b", "a", "c"], ["a", "c"], ["a"]])
    assert vocab == list(SPECIAL_TOKENS) + ["a", "c", "b"]


def test_min_frequency_and_max_size():
    lists = [["x"] * 5 + ["y"] * 3 + ["z"]]
    assert build_vocabulary(lists, min_frequency=3)[5:] == ["x", "y"]
    assert build_vocabulary(lists, max_size=6) == list(SPECIAL_TOKENS) + ["x"]


def test_special_tokens_in_text_are_not_counted_twice():
    vocab = build_vocabulary([["[UNK]", "a", "[PAD]"]])
    assert vocab == list(SPECIAL_TOKENS) + ["a"]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"min_frequency": 0}, "min_frequency"),
        ({"min_frequency": 1.5}, "min_frequency"),
        ({"max_size": 3}, "max_size"),
        ({"special_tokens": ["a", "a"]}, "special_tokens"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_vocabulary([["a"]], **kwargs)


def test_strings_instead_of_token_lists_are_rejected():
    with pytest.raises(TypeError, match="token_lists"):
        build_vocabulary("abc")
    with pytest.raises(TypeError, match="Segment text first"):
        build_vocabulary(["我喜欢", "你"])


def test_check_vocabulary_errors():
    with pytest.raises(ValueError, match="missing"):
        check_vocabulary(["a", "b"])
    with pytest.raises(ValueError, match="twice"):
        check_vocabulary(list(SPECIAL_TOKENS) + ["a", "a"])
    with pytest.raises(ValueError, match="line breaks"):
        check_vocabulary(list(SPECIAL_TOKENS) + ["a\nb"])
    with pytest.raises(ValueError, match="non-empty"):
        check_vocabulary(list(SPECIAL_TOKENS) + [""])
    with pytest.raises(TypeError, match="vocabulary"):
        check_vocabulary(5)


def test_file_round_trip_keeps_unusual_tokens(tmp_path):
    vocab = list(SPECIAL_TOKENS) + [SPACE_TOKEN, " x", "好 ", "\u3000"]
    path = str(tmp_path / "vocabulary.txt")
    write_vocabulary_file(vocab, path)
    assert read_vocabulary_file(path) == vocab


def test_unreadable_vocabulary_file(tmp_path):
    path = tmp_path / "vocabulary.txt"
    path.write_bytes(b"[PAD]\n\xff\n")
    with pytest.raises(ValueError, match="line 2: not valid UTF-8"):
        read_vocabulary_file(str(path))
