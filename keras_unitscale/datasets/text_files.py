"""Users' own data: plain-text files (one example a line) and CSV/TSV tables."""

import csv
import os

import numpy as np


def _decoded_lines(path, encoding, keep_line_ends=False, name="path"):
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"`{name}` must be a file path (str or os.PathLike). Received: {path!r}")
    with open(path, "rb") as f:
        raw_lines = f.read().split(b"\n")
    if raw_lines and raw_lines[-1] == b"":
        raw_lines.pop()
    lines = []
    for lineno, raw in enumerate(raw_lines, 1):
        try:
            line = raw.decode(encoding).rstrip("\r")
            lines.append(line + "\n" if keep_line_ends else line)
        except UnicodeDecodeError as e:
            raise ValueError(
                f"{os.fspath(path)}, line {lineno}: cannot decode byte {e.start + 1} of the line "
                f"as {encoding} ({e.reason}). Pass the file's real `encoding=` (e.g. 'gb18030' "
                "for many Chinese files) or fix the file."
            ) from None
    if lines and lines[0].startswith("\ufeff"):
        lines[0] = lines[0][1:]  # A UTF-8 byte-order mark is not text.
    return lines


def load_text_file(path, encoding="utf-8", skip_blank_lines=True):
    """Loads a text file with one example per line.

    Args:
        path: path to the file.
        encoding: the file's encoding. A line that does not decode raises `ValueError`
            naming the file and line number.
        skip_blank_lines: bool, drop lines that are empty or only whitespace.

    Returns:
        A NumPy object array of str, one per line, without line breaks.

    Example:

    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "reviews.txt")
    >>> _ = open(path, "w", encoding="utf-8").write("很好\\n\\n太差了\\n")
    >>> load_text_file(path).tolist()
    ['很好', '太差了']
    """
    lines = _decoded_lines(path, encoding)
    if skip_blank_lines:
        lines = [line for line in lines if line.strip()]
    return np.array(lines, dtype=object)


def _column_index(header, column, argument, path):
    if column not in header:
        raise ValueError(
            f"`{argument}`={column!r} is not a column of {os.fspath(path)}; its columns are "
            f"{header}."
        )
    return header.index(column)


def load_csv(
    path, text_column, label_column=None, delimiter=",", encoding="utf-8", label_names=None
):
    """Loads texts (and labels) from a CSV file whose first row names the columns.

    Args:
        path: path to the file.
        text_column: str, the name of the column holding text.
        label_column: optional str, the name of the column holding labels.
        delimiter: the field separator ("," for CSV, "\\t" for TSV; see `load_tsv`).
        encoding: the file's encoding; an undecodable line raises `ValueError` with the file
            name and line number.
        label_names: optional list of label strings; labels are then returned as indices into
            it (an unknown label raises `ValueError` with its line). Without it, labels are
            int64 if every label is an integer, else str.

    Returns:
        The texts (a NumPy object array of str) if `label_column` is None, else
        `(texts, labels)`.

    Example:

    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "data.csv")
    >>> _ = open(path, "w", encoding="utf-8").write("text,label\\n很好,pos\\n太差了,neg\\n")
    >>> x, y = load_csv(path, "text", "label", label_names=["neg", "pos"])
    >>> x.tolist(), y.tolist()
    (['很好', '太差了'], [1, 0])
    """
    # Line ends are kept so that quoted fields spanning lines keep their line breaks.
    lines = _decoded_lines(path, encoding, keep_line_ends=True)
    reader = csv.reader(lines, delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        raise ValueError(f"{os.fspath(path)} is empty; expected a header row.") from None
    text_index = _column_index(header, text_column, "text_column", path)
    label_index = None
    if label_column is not None:
        label_index = _column_index(header, label_column, "label_column", path)
    texts, labels, label_lines = [], [], []
    for row in reader:
        if not row:
            continue
        if len(row) != len(header):
            raise ValueError(
                f"{os.fspath(path)}, line {reader.line_num}: {len(row)} fields, but the header "
                f"has {len(header)}."
            )
        texts.append(row[text_index])
        if label_index is not None:
            labels.append(row[label_index].strip())
            label_lines.append(reader.line_num)
    texts = np.array(texts, dtype=object)
    if label_index is None:
        return texts
    return texts, _labels(labels, label_lines, label_names, path)


def _labels(labels, lines, label_names, path):
    if label_names is not None:
        index = {str(name): i for i, name in enumerate(label_names)}
        for label, line in zip(labels, lines):
            if label not in index:
                raise ValueError(
                    f"{os.fspath(path)}, line {line}: label {label!r} is not in `label_names` "
                    f"{list(index)}."
                )
        return np.array([index[label] for label in labels], dtype=np.int64)
    try:
        return np.array([int(label) for label in labels], dtype=np.int64)
    except ValueError:
        return np.array(labels, dtype=object)


def load_tsv(path, text_column, label_column=None, encoding="utf-8", label_names=None):
    """`load_csv` with tab-separated fields.

    Example:

    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "data.tsv")
    >>> _ = open(path, "w", encoding="utf-8").write("label\\ttext\\n1\\t很好\\n0\\t太差了\\n")
    >>> load_tsv(path, "text", "label")[1].tolist()
    [1, 0]
    """
    return load_csv(path, text_column, label_column, "\t", encoding, label_names)
