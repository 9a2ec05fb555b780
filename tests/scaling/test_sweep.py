"""The resumable sweep: an interrupted sweep keeps its finished rows and a rerun trains only
the rest; `keras-unitscale scaling-law` on tiny models; bad cells and foreign CSVs named."""

import pytest

from keras_unitscale.cli import main
from keras_unitscale.scaling import FIELDS, read_rows, run_sweep


def _cells(n=4):
    return [dict(model="toy", size=f"s{i}", tokens=100 * (i + 1), seed=0) for i in range(n)]


class _Runner:
    def __init__(self, stop_at=None):
        self.calls, self.stop_at = [], stop_at

    def __call__(self, cell):
        if len(self.calls) == self.stop_at:
            raise KeyboardInterrupt  # the user's Ctrl-C in the middle of a run
        self.calls.append(cell["size"])
        return {"val_loss": 1.0 / cell["tokens"], "params": 10}


def test_an_interrupted_sweep_resumes_without_rerunning(tmp_path):
    path = tmp_path / "sweep.csv"
    with pytest.raises(KeyboardInterrupt):
        run_sweep(path, _cells(), _Runner(stop_at=2), progress=False)
    first = path.read_text()
    assert [r["size"] for r in read_rows(path)] == ["s0", "s1"]
    runner = _Runner()
    rows, ran = run_sweep(path, _cells(), runner, progress=True)
    assert runner.calls == ["s2", "s3"] and ran == 2
    assert [r["size"] for r in rows] == ["s0", "s1", "s2", "s3"]
    assert path.read_text().startswith(first)  # the finished rows are untouched
    assert float(rows[3]["val_loss"]) == 1.0 / 400 and float(rows[0]["wall_time_s"]) >= 0
    assert list(rows[0]) == list(FIELDS)
    rows, ran = run_sweep(path, _cells(), _Runner(), progress=False)
    assert ran == 0 and len(rows) == 4


def test_a_row_cut_short_is_dropped_and_rerun(tmp_path):
    path = tmp_path / "sweep.csv"
    run_sweep(path, _cells(2), _Runner(), progress=False)
    with open(path, "a") as f:
        f.write("toy,s2,300,0,10,")  # a crash in the middle of writing a row
    assert len(read_rows(path)) == 2
    rows, ran = run_sweep(path, _cells(3), _Runner(), progress=False)
    assert ran == 1 and [r["size"] for r in rows] == ["s0", "s1", "s2"]
    assert path.read_text().count("\n") == 4  # header and three whole rows


@pytest.mark.parametrize(
    "cells, message",
    [
        ([dict(model="toy", size="a", tokens=1)], r"must be dicts holding \['model', 'size'"),
        (_cells(1) * 2, "repeats the run"),
        ([dict(_cells(1)[0], colour="red")], r"fields the CSV lacks: \['colour'\]"),
    ],
)
def test_bad_cells_are_named(tmp_path, cells, message):
    with pytest.raises(ValueError, match=message):
        run_sweep(tmp_path / "sweep.csv", cells, _Runner(), progress=False)


def test_bad_paths_and_foreign_csvs_are_named(tmp_path):
    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="not a sweep's"):
        run_sweep(other, _cells(1), _Runner(), progress=False)
    assert other.read_text() == "a,b\n1,2\n"
    with pytest.raises(ValueError, match="is a directory"):
        run_sweep(tmp_path, _cells(1), _Runner(), progress=False)
    with pytest.raises(ValueError, match="`run_cell` returned fields the CSV lacks"):
        run_sweep(tmp_path / "s.csv", _cells(1), lambda cell: {"accuracy": 1}, progress=False)


def test_cli_sweep_of_tiny_models_resumes(tmp_path, capsys):
    """A run, then the same command again: one row, not retrained (the interruption and the
    mixed case are `test_an_interrupted_sweep_resumes_without_rerunning`'s)."""
    path = str(tmp_path / "sweep.csv")
    args = ["scaling-law", "--csv", path, "--models", "mlp", "--mlp-sizes", "h16",
            "--vocabulary-size", "32", "--batch-size", "2", "--sequence-length", "8",
            "--resamples", "0", "--no-progress", "--corpus", "python_docs", "--tokens", "24"]
    assert main(args) == 0
    with open(path) as f:
        first = f.read()
    assert "1 runs trained, 0 found" in capsys.readouterr().out
    assert main(args) == 0
    assert "0 runs trained, 1 found" in capsys.readouterr().out
    with open(path) as f:
        assert f.read() == first
    (row,) = read_rows(path)
    hidden, window, vocab = 16, 8, 32
    body = window * hidden * hidden + hidden  # hidden kernel and bias
    assert int(row["params"]) == vocab * hidden + body  # the tied table and the body
    assert int(row["non_embedding_params"]) == body
    assert int(row["steps"]) == 2  # 24 tokens in batches of 2 x 8
    assert int(row["flops"]) == 6 * int(row["params"]) * 2 * 16
    assert 0 < float(row["val_loss"]) < 10 and row["corpus"] == "python_docs"
    assert main(args + ["--mlp-sizes", "h999"]) == 1
    assert "Unknown size 'h999'" in capsys.readouterr().err
