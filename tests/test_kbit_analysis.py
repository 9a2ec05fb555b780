"""The k-bit study's reading (`benchmarks/kbit_analysis.py`), on made-up models whose answer
is known: the Pareto frontier, the part of a family where loss falls with size, and the
lowest k curve at a budget. Pure Python and NumPy: no model is built."""

import pytest
from scripts import load_script

pytestmark = pytest.mark.backend_independent


def _analysis():
    return load_script("benchmarks/kbit_analysis.py", "kbit_analysis_benchmark")


def _model(width, parameters, float_loss, damage):
    """A model whose k-bit loss is `float_loss + damage / 8 ** (k - 3)` (int, blocks of 64)."""
    rows = [dict(bits=k, dtype="int", block_size=64, val_loss=float_loss + damage / 8 ** (k - 3),
                 total_bits=int(parameters * (k + 0.25)), bits_per_parameter=k + 0.25)
            for k in range(3, 9)]
    return dict(family="unit_scaled", layers=1, width=width, parameters=parameters,
                float_val_loss=float_loss, unigram_val_loss=6.0, rows=rows)


def test_pareto_keeps_only_rows_nothing_beats():
    analysis = _analysis()
    rows = [dict(total_bits=b, val_loss=v) for b, v in
            [(10, 5.0), (20, 4.0), (30, 4.5), (40, 3.0), (40, 3.5)]]
    assert [(r["total_bits"], r["val_loss"]) for r in analysis.pareto(rows)] == [
        (10, 5.0), (20, 4.0), (40, 3.0)]


def test_falling_stops_at_the_first_size_that_does_not_improve():
    analysis = _analysis()
    models = [_model(8, 1000, 5.0, 1.0), _model(16, 4000, 4.5, 1.0),
              _model(32, 16000, 4.6, 1.0), _model(64, 64000, 4.0, 1.0)]
    assert [m["width"] for m in analysis.falling(models)] == [8, 16]


def test_curves_pick_the_k_whose_curve_is_lowest():
    analysis = _analysis()
    # Loss falls 1 nat per 4x parameters, so at a budget B the k-bit curve is
    # const + log4(k + 0.25) + 8 ** (3 - k): 1.85 at k=3, 1.17 at 4, 1.21 at 5, 1.32 at 6
    # (linear in log bits, so the interpolation is exact).
    models = [_model(8 * 2**i, 1000 * 4**i, 6.0 - i, 1.0) for i in range(4)]
    budgets = analysis.curves_at_budgets(models, "int", 64)
    assert budgets, "no budget that three k reach"
    assert {b["best_bits"] for b in budgets} == {4}
    for b in budgets:
        losses = b["loss_per_k"]
        assert losses[4] < min(v for k, v in losses.items() if k != 4)
