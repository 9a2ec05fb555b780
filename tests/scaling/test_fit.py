"""Scaling-law fits: known parameters recovered from noisy synthetic runs, intervals that cover
them, the compute-optimal split, and bad input named."""

import math

import numpy as np
import pytest

from keras_unitscale.scaling import (
    ChinchillaFit,
    PowerLawFit,
    compute_optimal,
    fit_chinchilla,
    fit_power_law,
)

# NumPy only: no Keras backend in the path, so one pass runs it.
pytestmark = pytest.mark.backend_independent

POWER = dict(E=1.8, A=25.0, alpha=0.28)
CHINCHILLA = dict(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)  # Hoffmann et al.'s fit
NOISE = 0.01  # 1% multiplicative noise on each loss


@pytest.fixture(scope="module")
def power_fit():
    n = np.logspace(4, 9, 11)
    rng = np.random.default_rng(0)
    loss = (POWER["E"] + POWER["A"] * n ** -POWER["alpha"]) * np.exp(
        NOISE * rng.standard_normal(n.size))
    return fit_power_law(n, loss, resamples=400, level=0.95, seed=0)


@pytest.fixture(scope="module")
def chinchilla_fit():
    n, d = (a.ravel() for a in np.meshgrid(np.logspace(6, 10, 5), np.logspace(8, 12, 5)))
    rng = np.random.default_rng(0)
    c = CHINCHILLA
    loss = (c["E"] + c["A"] / n ** c["alpha"] + c["B"] / d ** c["beta"]) * np.exp(
        NOISE * rng.standard_normal(n.size))
    return fit_chinchilla(n, d, loss, resamples=200, level=0.99, seed=0)


def test_power_law_recovers_the_parameters_and_intervals_cover_them(power_fit):
    assert isinstance(power_fit, PowerLawFit) and power_fit.num_points == 11
    assert power_fit.alpha == pytest.approx(POWER["alpha"], rel=0.1)
    assert power_fit.E == pytest.approx(POWER["E"], rel=0.05)
    for name, truth in POWER.items():
        low, high = power_fit.intervals[name]
        assert low < getattr(power_fit, name) < high, name
        assert low <= truth <= high, f"{name}: {truth} outside [{low:.4g}, {high:.4g}]"
    # The interval is informative: a few percent of alpha, not the whole line.
    low, high = power_fit.intervals["alpha"]
    assert high - low < 0.3 * POWER["alpha"]


def test_power_law_is_exact_without_noise():
    n = np.logspace(3, 7, 6)
    fit = fit_power_law(n, 3.0 + 12.0 * n ** -0.5, resamples=0)
    assert (fit.E, fit.A, fit.alpha) == pytest.approx((3.0, 12.0, 0.5), rel=1e-3)
    assert fit.intervals == {}
    np.testing.assert_allclose(fit.predict(n), 3.0 + 12.0 * n ** -0.5, rtol=1e-4)


def test_chinchilla_recovers_the_exponents_and_intervals_cover_them(chinchilla_fit):
    assert isinstance(chinchilla_fit, ChinchillaFit) and chinchilla_fit.num_points == 25
    for name in ("alpha", "beta"):
        assert getattr(chinchilla_fit, name) == pytest.approx(CHINCHILLA[name], rel=0.1), name
    assert chinchilla_fit.E == pytest.approx(CHINCHILLA["E"], rel=0.1)
    for name, truth in CHINCHILLA.items():
        low, high = chinchilla_fit.intervals[name]
        assert low <= truth <= high, f"{name}: {truth} outside [{low:.4g}, {high:.4g}]"


def test_repr_is_readable(power_fit, chinchilla_fit):
    text = repr(power_fit)
    assert text.startswith("PowerLawFit(E=") and "alpha=0.2" in text and "95% intervals" in text
    assert "[" in text and "11 points" in text
    assert repr(chinchilla_fit).startswith("ChinchillaFit(E=") and "beta=" in repr(chinchilla_fit)


def test_compute_optimal_minimises_the_loss_at_fixed_compute():
    fit = ChinchillaFit(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28, intervals={},
                        level=0.9, num_points=0)
    flops = 5.76e23  # Chinchilla's budget
    best = compute_optimal(flops, fit)
    assert 6 * best.params * best.tokens == pytest.approx(flops, rel=1e-12)
    # An independent check: scan the iso-FLOP line; the fitted law's minimum is N_opt.
    n = np.geomspace(best.params / 30, best.params * 30, 20001)
    scanned = n[np.argmin(fit.predict(n, flops / (6 * n)))]
    assert scanned == pytest.approx(best.params, rel=2e-3)
    assert best.loss == pytest.approx(float(fit.predict(best.params, best.tokens)))
    # Published: about 40B parameters on 1.4T... at this budget the approach-3 fit gives ~40B.
    assert 2e10 < best.params < 6e10
    several = compute_optimal(np.array([1e20, 1e22]), fit)
    assert several.params.shape == (2,) and several.params[1] > several.params[0]
    assert "tokens/param" in repr(best)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: fit_power_law([1, 2, 3], [3.0, 2.0, 1.5]), r"`n`/`loss` must hold more points"),
        (lambda: fit_power_law([1, 2, 3, 4], [3.0, 2.0, 1.5]), r"len\(n\)=4, len\(loss\)=3"),
        (lambda: fit_power_law([1, 0, 3, 4], [3, 2, 1.5, 1.2]), r"`n` must be positive"),
        (lambda: fit_power_law([1, 2, 3, 4], [3, -2, 1.5, 1.2]), r"`loss` must be positive"),
        (lambda: fit_power_law([1, 2, 3, 4], [3, math.nan, 1.5, 1.2]),
         r"`loss` must be finite; element 1 is nan"),
        (lambda: fit_power_law([1, 2, 3, 4], [3, 2, math.inf, 1.2]), r"`loss` must be finite"),
        (lambda: fit_power_law([[1, 2], [3, 4]], [3, 2, 1.5, 1.2]), r"`n` must be a 1-D"),
        (lambda: fit_power_law(["a"] * 4, [3, 2, 1.5, 1.2]), r"`n` must be a 1-D"),
        (lambda: fit_power_law([1, 2, 3, 4], [3, 2, 1.5, 1.2], resamples=-1), "`resamples`"),
        (lambda: fit_power_law([1, 2, 3, 4], [3, 2, 1.5, 1.2], level=1.0), "`level`"),
        (lambda: fit_chinchilla([1] * 5, [1] * 5, [1] * 5), r"more points than the 5"),
        (lambda: fit_chinchilla([1] * 6, [1] * 5, [1] * 6), r"len\(d\)=5"),
        (lambda: fit_chinchilla([1] * 6, [1, 1, 1, 1, 1, -1], [1] * 6), r"`d` must be positive"),
        (lambda: compute_optimal(1e20, "fit"), "`fit` must be a ChinchillaFit"),
        (lambda: compute_optimal(-1.0, ChinchillaFit(1, 1, 1, 0.3, 0.3, {}, 0.9, 6)),
         "`flops` must be positive"),
    ],
)
def test_bad_input_is_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()
