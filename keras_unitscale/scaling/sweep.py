"""A resumable sweep: one CSV row per finished run, appended and flushed as it finishes.

`run_sweep(path, cells, run_cell)` runs `run_cell(cell)` for every cell (a dict such as
`{"model": "mlp", "size": "h64", "tokens": 131072, "seed": 0}`) whose key is not yet a row of
the CSV at `path`, and appends its row (the cell's fields and what `run_cell` measured) as
one `write` of one line, then `flush` and `fsync`: an interrupted sweep loses at most the run
in progress, and running it again skips the rows already there. A last line cut short by a
crash (no newline) is dropped before anything is appended.
"""

import csv
import io
import os
import time

KEY_FIELDS = ("model", "size", "tokens", "seed")
"""The fields that identify a run: a cell with the same values is not run again."""

FIELDS = KEY_FIELDS + (
    "params", "non_embedding_params", "flops", "steps", "batch_size", "sequence_length",
    "learning_rate", "train_loss", "val_loss", "wall_time_s", "corpus", "backend",
)
"""The CSV's columns, in order."""


def _key(row):
    return tuple(str(row[field]) for field in KEY_FIELDS)


def _check_path(path):
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise ValueError(f"`path` must be a file path for the CSV; received {path!r:.80}.")
    path = os.fspath(path)
    if os.path.isdir(path):
        raise ValueError(f"`path` must be a CSV file path; {path} is a directory.")
    return path


def read_rows(path):
    """The complete rows of the sweep CSV at `path` (a list of dicts of strings).

    A missing or empty file has none. A last line without its newline (a write cut short)
    is not a row.

    Example:
    >>> import os, tempfile
    >>> from keras_unitscale.scaling.sweep import read_rows
    >>> path = os.path.join(tempfile.mkdtemp(), "sweep.csv")
    >>> read_rows(path)
    []
    """
    path = _check_path(path)
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8", newline="") as f:
        text = f.read()
    complete = text[: text.rfind("\n") + 1]
    rows = list(csv.DictReader(io.StringIO(complete)))
    if rows and rows[0].keys() and set(KEY_FIELDS) - set(rows[0].keys()):
        raise ValueError(
            f"{path} is not a sweep CSV: its header lacks "
            f"{sorted(set(KEY_FIELDS) - set(rows[0].keys()))}."
        )
    return rows


def _prepare(path):
    """Drops a partial last line; writes the header into a new or empty file."""
    if os.path.exists(path):
        with open(path, "rb+") as f:
            data = f.read()
            end = data.rfind(b"\n") + 1
            if end < len(data):
                f.truncate(end)
            if end > 0:
                header = data[: data.find(b"\n")].decode("utf-8").strip().split(",")
                if header != list(FIELDS):
                    raise ValueError(
                        f"{path} has the columns {header}, not a sweep's {list(FIELDS)}: "
                        "write the sweep to a new file."
                    )
                return
    _append(path, FIELDS)


def _line(values):
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(values)
    return buffer.getvalue().encode("utf-8")


def _append(path, values):
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, _line(values))
        os.fsync(fd)
    finally:
        os.close(fd)


def _progress_bar(total, enabled):
    if not enabled:
        return None
    import keras

    return keras.utils.Progbar(total, unit_name="run")


def run_sweep(path, cells, run_cell, progress=True):
    """Runs every cell not yet in the CSV at `path`, appending one row per finished run.

    Args:
        path: the CSV file (created with its header if missing).
        cells: dicts holding at least `KEY_FIELDS`; the other `FIELDS` they hold are
            written as they are.
        run_cell: `run_cell(cell) -> dict` of measured `FIELDS` (`val_loss`, `params`, ...);
            `wall_time_s` is filled in if it does not set it.
        progress: show a `keras.utils.Progbar` over the cells.

    Returns:
        `(rows, ran)`: every row of the CSV after the sweep, as dicts of strings, and the
        number of cells run now.

    Raises:
        ValueError: a cell lacks a key field or repeats another's key; `run_cell` returned
            fields the CSV does not have; `path` holds another kind of CSV.

    Example:
    >>> import os, tempfile
    >>> from keras_unitscale.scaling import run_sweep
    >>> path = os.path.join(tempfile.mkdtemp(), "sweep.csv")
    >>> cells = [dict(model="toy", size=s, tokens=100, seed=0) for s in ("a", "b")]
    >>> rows, ran = run_sweep(path, cells, lambda c: {"val_loss": 1.0}, progress=False)
    >>> len(rows), ran
    (2, 2)
    >>> rows, ran = run_sweep(path, cells, lambda c: {"val_loss": 1.0}, progress=False)
    >>> len(rows), ran
    (2, 0)
    """
    path = _check_path(path)
    cells = list(cells)
    seen = set()
    for i, cell in enumerate(cells):
        if not isinstance(cell, dict) or set(KEY_FIELDS) - set(cell):
            raise ValueError(
                f"`cells` must be dicts holding {list(KEY_FIELDS)}; cell {i} is {cell!r:.80}."
            )
        unknown = sorted(set(cell) - set(FIELDS))
        if unknown:
            raise ValueError(f"`cells`[{i}] has fields the CSV lacks: {unknown}.")
        if _key(cell) in seen:
            raise ValueError(f"`cells` repeats the run {dict(zip(KEY_FIELDS, _key(cell)))}.")
        seen.add(_key(cell))
    if not callable(run_cell):
        raise ValueError(f"`run_cell` must be callable; received {run_cell!r:.80}.")
    _prepare(path)
    done = {_key(row) for row in read_rows(path)}
    todo = [cell for cell in cells if _key(cell) not in done]
    bar = _progress_bar(len(cells), progress)
    if bar is not None:
        bar.update(len(cells) - len(todo))
    for cell in todo:
        start = time.perf_counter()
        measured = dict(run_cell(dict(cell)) or {})
        measured.setdefault("wall_time_s", round(time.perf_counter() - start, 3))
        unknown = sorted(set(measured) - set(FIELDS))
        if unknown:
            raise ValueError(f"`run_cell` returned fields the CSV lacks: {unknown}.")
        row = {**cell, **measured}
        _append(path, [row.get(field, "") for field in FIELDS])
        if bar is not None:
            bar.add(1)
    return read_rows(path), len(todo)
