"""Fitting scaling laws: `fit_power_law`, `fit_chinchilla` and `compute_optimal`.

Both fits follow Hoffmann et al. (2022, "Training compute-optimal large language models",
approach 3): the parameters are fitted in log space, `E = exp(e)`, `A = exp(a)`,
`B = exp(b)`, by minimising the Huber loss (`delta = 1e-3` by default) of the residuals
`log L - log L_hat`, where `log L_hat = logsumexp(e, a - alpha log N[, b - beta log D])`,
from the points of a grid of initialisations (by default, for the five-parameter law, the
256 of Hoffmann et al.'s grid with the lowest objective); the best local minimum is kept. The
minimiser is BFGS with a backtracking line search written in NumPy (SciPy is not a
dependency), run on every start of the grid at once.

Intervals come from a residual bootstrap: the log-residuals of the fit, centred and widened
by `sqrt(n / (n - p))` for the `p` parameters fitted, are resampled with replacement (a fixed
seed), added to the fitted log-losses, and the law refitted from the
fitted parameters; the interval of each parameter is the central `level` percentile range
of the refits. Resampling residuals rather than points keeps the design (the sizes the
sweep chose), so no resample loses the spread of sizes a fit needs.
"""

import dataclasses
import itertools

import numpy as np

from keras_unitscale.scaling._minimize import bootstrap, fit_from_grid, percentile_intervals


# Input checks ----------------------------------------------------------------------------------
def _positive_array(values, name):
    try:
        array = np.asarray(values, dtype="float64")
    except (TypeError, ValueError):
        raise ValueError(
            f"`{name}` must be a 1-D sequence of positive numbers; received {values!r:.80}."
        ) from None
    if array.ndim != 1:
        raise ValueError(
            f"`{name}` must be a 1-D sequence of positive numbers; received shape {array.shape}."
        )
    if not np.all(np.isfinite(array)):
        bad = int(np.flatnonzero(~np.isfinite(array))[0])
        raise ValueError(
            f"`{name}` must be finite; element {bad} is {array[bad]} (a NaN or infinite "
            "value, e.g. from a diverged run: drop that run first)."
        )
    if np.any(array <= 0):
        bad = int(np.flatnonzero(array <= 0)[0])
        raise ValueError(f"`{name}` must be positive; element {bad} is {array[bad]}.")
    return array


def _check_columns(columns, num_params):
    arrays = {name: _positive_array(values, name) for name, values in columns.items()}
    lengths = {name: len(a) for name, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(
            "The arguments must have one value per run, the same length each; received "
            + ", ".join(f"len({name})={n}" for name, n in lengths.items())
            + "."
        )
    n = next(iter(lengths.values()))
    if n <= num_params:
        names = "/".join(f"`{name}`" for name in arrays)
        raise ValueError(
            f"{names} must hold more points than the {num_params} parameters of the law; "
            f"received {n}."
        )
    return arrays


def _check_positive_int(value, name, minimum=1):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"`{name}` must be an int >= {minimum}; received {value!r:.80}.")
    return int(value)


def _check_level(level):
    if not isinstance(level, (int, float)) or isinstance(level, bool) or not 0 < level < 1:
        raise ValueError(f"`level` must be a number in (0, 1); received {level!r:.80}.")
    return float(level)


# Printing --------------------------------------------------------------------------------------
def _format(value):
    return f"{value:.4g}"


def _repr(obj, names):
    parts = []
    for name in names:
        value = getattr(obj, name)
        interval = obj.intervals.get(name) if obj.intervals else None
        text = f"{name}={_format(value)}"
        if interval is not None:
            text += f" [{_format(interval[0])}, {_format(interval[1])}]"
        parts.append(text)
    level = f", {obj.level:.0%} intervals" if obj.intervals else ""
    return f"{type(obj).__name__}({', '.join(parts)}; {obj.num_points} points{level})"


# Results ---------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, repr=False)
class PowerLawFit:
    """`L = E + A * n ** -alpha`, fitted by `fit_power_law`.

    `intervals` maps `"E"`, `"A"` and `"alpha"` to their bootstrap `(low, high)` at `level`
    (empty with `resamples=0`); `num_points` is the number of runs fitted.
    """

    E: float
    A: float
    alpha: float
    intervals: dict
    level: float
    num_points: int

    def predict(self, n):
        """The fitted loss at size(s) `n`."""
        return self.E + self.A * np.asarray(n, dtype="float64") ** -self.alpha

    def __repr__(self):
        return _repr(self, ("E", "A", "alpha"))


@dataclasses.dataclass(frozen=True, repr=False)
class ChinchillaFit:
    """`L = E + A / N ** alpha + B / D ** beta`, fitted by `fit_chinchilla`.

    `intervals` maps each parameter to its bootstrap `(low, high)` at `level` (empty with
    `resamples=0`); `num_points` is the number of runs fitted.
    """

    E: float
    A: float
    B: float
    alpha: float
    beta: float
    intervals: dict
    level: float
    num_points: int

    def predict(self, n, d):
        """The fitted loss at `n` parameters and `d` training tokens."""
        n, d = np.asarray(n, dtype="float64"), np.asarray(d, dtype="float64")
        return self.E + self.A * n ** -self.alpha + self.B * d ** -self.beta

    def __repr__(self):
        return _repr(self, ("E", "A", "B", "alpha", "beta"))


@dataclasses.dataclass(frozen=True)
class ComputeOptimal:
    """The compute-optimal split of `flops` (`C = 6 N D`) under a `ChinchillaFit`."""

    flops: float
    params: float
    tokens: float
    loss: float

    def __repr__(self):
        return (f"ComputeOptimal(flops={self.flops:.3g}: params={self.params:.3g}, "
                f"tokens={self.tokens:.3g}, tokens/param={self.tokens / self.params:.3g}, "
                f"loss={self.loss:.4g})")


# Public API ------------------------------------------------------------------------------------
def fit_power_law(n, loss, resamples=1000, level=0.9, seed=0, delta=1e-3, grid=None,
                  starts=None):
    """Fits `L = E + A * n ** -alpha` to losses `loss` measured at sizes `n`.

    Args:
        n: sizes (parameters, tokens or FLOPs), one per run, positive.
        loss: the runs' losses, positive and finite.
        resamples: bootstrap refits for the intervals (0: none).
        level: the intervals' coverage, e.g. 0.9 for the 5th to 95th percentiles.
        seed: the bootstrap's random seed.
        delta: the Huber loss's threshold on log-residuals.
        grid: optional `[S, 3]` initialisations `(log E, log A, alpha)`; by default a grid
            of 5 x 6 x 5 points.
        starts: run the minimiser from the `starts` points of the grid with the lowest
            objective (default: all of them).

    Returns:
        a `PowerLawFit`.

    Raises:
        ValueError: naming the argument, for fewer than 4 points, lengths that differ,
            non-positive sizes or losses, NaN or infinite values.

    Example:
    >>> import numpy as np
    >>> from keras_unitscale.scaling import fit_power_law
    >>> n = np.logspace(4, 8, 9)
    >>> fit = fit_power_law(n, 1.5 + 40.0 * n ** -0.3, resamples=0)
    >>> round(fit.E, 3), round(fit.A, 2), round(fit.alpha, 4)
    (1.5, 40.0, 0.3)
    """
    data = _check_columns({"n": n, "loss": loss}, 3)
    resamples = _check_positive_int(resamples, "resamples", minimum=0)
    level = _check_level(level)
    features = [np.log(data["n"])]
    log_loss = np.log(data["loss"])
    if grid is None:
        low = float(np.min(log_loss))
        grid = np.array(list(itertools.product(
            low + np.log([0.05, 0.3, 0.6, 0.9, 0.99]),
            [0.0, 2.5, 5.0, 10.0, 15.0, 20.0],
            [0.05, 0.2, 0.5, 1.0, 2.0],
        )))
    theta = fit_from_grid(features, log_loss, np.asarray(grid, "float64"), delta, starts)
    intervals = {}
    if resamples:
        samples = bootstrap(features, log_loss, theta, delta, resamples, seed)
        samples = np.column_stack([np.exp(samples[:, 0]), np.exp(samples[:, 1]), samples[:, 2]])
        intervals = percentile_intervals(samples, ("E", "A", "alpha"), level)
    return PowerLawFit(float(np.exp(theta[0])), float(np.exp(theta[1])), float(theta[2]),
                       intervals, level, len(log_loss))


def fit_chinchilla(n, d, loss, resamples=1000, level=0.9, seed=0, delta=1e-3, grid=None,
                   starts=256):
    """Fits `L = E + A / N ** alpha + B / D ** beta` (Hoffmann et al. 2022, approach 3).

    Args:
        n: parameters of each run, positive.
        d: training tokens of each run, positive.
        loss: the runs' final losses, positive and finite.
        resamples: bootstrap refits for the intervals (0: none).
        level: the intervals' coverage.
        seed: the bootstrap's random seed.
        delta: the Huber loss's threshold on log-residuals (Hoffmann et al.: 1e-3).
        grid: optional `[S, 5]` initialisations `(log E, log A, log B, alpha, beta)`; by
            default Hoffmann et al.'s grid, coarsened: log E in {-1, 0, 1}, log A and log B
            in {0, 5, 10, 15, 20, 25}, alpha and beta in {0, 0.5, 1, 1.5, 2} (2,700 points).
        starts: run the minimiser from the `starts` points of the grid with the lowest
            objective (`None`: all of them, as Hoffmann et al.; 10x slower).

    Returns:
        a `ChinchillaFit`.

    Raises:
        ValueError: naming the argument, for 5 points or fewer, lengths that differ,
            non-positive values, NaN or infinite values.

    Example:
    >>> import numpy as np
    >>> from keras_unitscale.scaling import compute_optimal, fit_chinchilla
    >>> n, d = (a.ravel() for a in np.meshgrid(np.logspace(6, 9, 4), np.logspace(8, 11, 4)))
    >>> fit = fit_chinchilla(n, d, 1.7 + 400 / n ** 0.34 + 410 / d ** 0.28, resamples=0,
    ...                      starts=16)
    >>> round(fit.alpha, 3), round(fit.beta, 3)
    (0.34, 0.28)
    >>> best = compute_optimal(1e21, fit)
    >>> bool(abs(6 * best.params * best.tokens / 1e21 - 1) < 1e-9)
    True
    """
    data = _check_columns({"n": n, "d": d, "loss": loss}, 5)
    resamples = _check_positive_int(resamples, "resamples", minimum=0)
    level = _check_level(level)
    features = [np.log(data["n"]), np.log(data["d"])]
    log_loss = np.log(data["loss"])
    if grid is None:
        grid = np.array(list(itertools.product(
            [-1.0, 0.0, 1.0],
            [0.0, 5.0, 10.0, 15.0, 20.0, 25.0],
            [0.0, 5.0, 10.0, 15.0, 20.0, 25.0],
            [0.0, 0.5, 1.0, 1.5, 2.0],
            [0.0, 0.5, 1.0, 1.5, 2.0],
        )))
    theta = fit_from_grid(features, log_loss, np.asarray(grid, "float64"), delta, starts)
    names = ("E", "A", "B", "alpha", "beta")
    intervals = {}
    if resamples:
        samples = bootstrap(features, log_loss, theta, delta, resamples, seed)
        samples = np.column_stack([np.exp(samples[:, :3]), samples[:, 3:]])
        intervals = percentile_intervals(samples, names, level)
    values = [float(np.exp(theta[i])) for i in range(3)] + [float(theta[3]), float(theta[4])]
    return ChinchillaFit(*values, intervals, level, len(log_loss))


def compute_optimal(flops, fit):
    """The parameters and tokens that minimise a `ChinchillaFit`'s loss at `flops = 6 N D`.

    `N_opt = G (C / 6) ** (beta / (alpha + beta))` and `D_opt = (C / 6) / N_opt`, with
    `G = (alpha A / (beta B)) ** (1 / (alpha + beta))` (Hoffmann et al. 2022, eq. 4).

    Args:
        flops: the training compute `C`, positive (a number or an array of them).
        fit: a `ChinchillaFit`.

    Returns:
        a `ComputeOptimal` (its fields arrays when `flops` is an array).

    Example: see `fit_chinchilla`.
    """
    if not isinstance(fit, ChinchillaFit):
        raise ValueError(
            "`fit` must be a ChinchillaFit (from fit_chinchilla): the optimum trades "
            f"parameters against tokens; received {type(fit).__name__}."
        )
    scalar = np.ndim(flops) == 0
    c = _positive_array(np.atleast_1d(flops), "flops")
    if fit.alpha <= 0 or fit.beta <= 0:
        raise ValueError(
            f"`fit` has a non-positive exponent (alpha={fit.alpha:.3g}, beta={fit.beta:.3g}): "
            "its loss does not fall with both size and data, so no compute-optimal split exists."
        )
    a, b = fit.alpha, fit.beta
    g = (a * fit.A / (b * fit.B)) ** (1.0 / (a + b))
    params = g * (c / 6.0) ** (b / (a + b))
    tokens = (c / 6.0) / params
    loss = fit.predict(params, tokens)
    if scalar:
        return ComputeOptimal(float(c[0]), float(params[0]), float(tokens[0]), float(loss[0]))
    return ComputeOptimal(c, params, tokens, loss)
