import numpy as np
import pytest

from keras_unitscale.datasets import load_csv, load_text_file, load_tsv


def test_text_file_lines(tmp_path):
    path = tmp_path / "a.txt"
    path.write_bytes("\ufeff第一行\r\n\n  \n第二行\n".encode())
    assert load_text_file(path).tolist() == ["第一行", "第二行"]
    assert load_text_file(str(path), skip_blank_lines=False).tolist() == [
        "第一行",
        "",
        "  ",
        "第二行",
    ]


def test_text_file_not_utf8_names_file_and_line(tmp_path):
    path = tmp_path / "gbk.txt"
    path.write_bytes(b"ok\n" + "很好\n".encode("gbk"))
    with pytest.raises(ValueError, match=r"gbk.txt, line 2: cannot decode"):
        load_text_file(path)
    assert load_text_file(path, encoding="gb18030").tolist()[1] == "很好"


def test_text_file_bad_path_type():
    with pytest.raises(TypeError, match="`path` must be a file path"):
        load_text_file(None)
    with pytest.raises(FileNotFoundError):
        load_text_file("/no/such/file.txt")


@pytest.fixture()
def table(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text(
        'id,text,label\n1,"很好, 推荐",pos\n2,"多行\n评论",neg\n\n3,一般,pos\n', encoding="utf-8"
    )
    return path


def test_csv_columns_and_labels(table):
    assert load_csv(table, "text").tolist() == ["很好, 推荐", "多行\n评论", "一般"]
    x, y = load_csv(table, "text", "label")
    assert y.tolist() == ["pos", "neg", "pos"]
    _, y = load_csv(table, "text", "label", label_names=["neg", "pos"])
    assert y.tolist() == [1, 0, 1] and y.dtype == np.int64
    _, ids = load_csv(table, "text", "id")
    assert ids.tolist() == [1, 2, 3] and ids.dtype == np.int64


def test_csv_errors(table, tmp_path):
    with pytest.raises(
        ValueError, match=r"`text_column`='body' is not a column .*\['id', 'text', 'label'\]"
    ):
        load_csv(table, "body")
    with pytest.raises(ValueError, match="line 4: label 'neg' is not in `label_names`"):
        load_csv(table, "text", "label", label_names=["pos"])
    short = tmp_path / "short.csv"
    short.write_text("text,label\nok,1\nmissing\n", encoding="utf-8")
    with pytest.raises(ValueError, match="short.csv, line 3: 1 fields, but the header has 2"):
        load_csv(short, "text", "label")
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"text\nok\n\xff\n")
    with pytest.raises(ValueError, match="bad.csv, line 3"):
        load_csv(bad, "text")
    empty = tmp_path / "empty.csv"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(ValueError, match="header"):
        load_csv(empty, "text")


def test_tsv(tmp_path):
    path = tmp_path / "data.tsv"
    path.write_text("label\ttext\n0\t差, 不推荐\n1\t好\n", encoding="utf-8")
    x, y = load_tsv(path, "text", "label")
    assert x.tolist() == ["差, 不推荐", "好"] and y.tolist() == [0, 1]
