"""The minimiser behind `keras_unitscale.scaling.fit`: the Huber objective of a scaling law
in log space, batched BFGS from a grid of starts, and the residual bootstrap (the method is
described in `keras_unitscale.scaling.fit`). NumPy only: SciPy is not a dependency."""

import math

import numpy as np


def _huber(r, delta):
    """Huber loss and its derivative, elementwise."""
    a = np.abs(r)
    quadratic = a <= delta
    loss = np.where(quadratic, 0.5 * r * r, delta * (a - 0.5 * delta))
    slope = np.where(quadratic, r, delta * np.sign(r))
    return loss, slope


def _log_prediction(theta, features):
    """`log L_hat [S, n]` and its gradient `[S, n, p]` for parameters `theta [S, p]`.

    `theta` is `(e, a, alpha)` against `features = [log N]`, or `(e, a, b, alpha, beta)`
    against `[log N, log D]`.
    """
    k = len(features)
    e = theta[:, :1]
    logs = theta[:, 1: 1 + k]  # a (, b)
    exps = theta[:, 1 + k:]  # alpha (, beta)
    terms = [e] + [logs[:, i: i + 1] - exps[:, i: i + 1] * features[i][None] for i in range(k)]
    terms = [np.broadcast_to(t, (theta.shape[0], features[0].size)) for t in terms]
    stacked = np.stack(terms, axis=-1)  # [S, n, 1 + k]
    top = np.max(stacked, axis=-1, keepdims=True)
    weights = np.exp(stacked - top)
    total = np.sum(weights, axis=-1, keepdims=True)
    log_pred = (top + np.log(total))[..., 0]
    w = weights / total  # softmax: d log_pred / d term
    grad = np.empty(stacked.shape[:2] + (theta.shape[1],))
    grad[..., 0] = w[..., 0]
    for i in range(k):
        grad[..., 1 + i] = w[..., 1 + i]
        grad[..., 1 + k + i] = -w[..., 1 + i] * features[i][None]
    return log_pred, grad


def _bfgs(fun, x0, max_iter=1000, tol=1e-12, ftol=1e-10):
    """Minimises each row of `x0 [S, p]` with BFGS (Armijo backtracking), all rows at once.

    `fun(x)` returns `(f [S], grad [S, p])`, `fun.rows(x, rows)` the same for the rows
    `rows` (a boolean mask) of the batch. Returns `(x, f)`.
    """
    x = np.array(x0, dtype="float64")
    s_count, p = x.shape
    f, g = fun(x)
    h = np.broadcast_to(np.eye(p), (s_count, p, p)).copy()
    active = np.ones(s_count, bool)
    for _ in range(max_iter):
        active &= np.isfinite(f) & (np.max(np.abs(g), axis=1) > tol)
        if not active.any():
            break
        d = -np.einsum("spq,sq->sp", h, g)
        slope = np.sum(d * g, axis=1)
        uphill = slope >= 0
        if uphill.any():  # not a descent direction: restart from steepest descent
            h[uphill] = np.eye(p)
            d[uphill] = -g[uphill]
            slope[uphill] = -np.sum(g[uphill] ** 2, axis=1)
        step = np.where(active, 1.0, 0.0)
        accepted = ~active
        x_new, f_new, g_new = x.copy(), f.copy(), g.copy()
        for _ in range(30):
            trial = ~accepted
            if not trial.any():
                break
            xt = x[trial] + step[trial, None] * d[trial]
            ft, gt = fun.rows(xt, trial)
            ok = np.isfinite(ft) & (ft <= f[trial] + 1e-4 * step[trial] * slope[trial])
            rows = np.flatnonzero(trial)
            good = rows[ok]
            x_new[good], f_new[good], g_new[good] = xt[ok], ft[ok], gt[ok]
            accepted[good] = True
            step[rows[~ok]] *= 0.5
        # Converged: no decrease found, or a relative one below ftol. (Relative to f itself:
        # a Huber objective of small residuals is ~1e-4, and SciPy's floor of 1 would stop
        # the refits of a flat direction, such as A against alpha, where they start.)
        decrease = (f - f_new) / np.maximum(np.maximum(np.abs(f), np.abs(f_new)), 1e-300)
        moved = active & accepted
        active &= accepted & (decrease > ftol)
        s = x_new - x
        y = g_new - g
        sy = np.sum(s * y, axis=1)
        update = moved & (sy > 1e-12)
        if update.any():
            rho = 1.0 / sy[update]
            eye = np.eye(p)[None]
            left = eye - rho[:, None, None] * s[update][:, :, None] * y[update][:, None, :]
            right = eye - rho[:, None, None] * y[update][:, :, None] * s[update][:, None, :]
            h[update] = left @ h[update] @ right + rho[:, None, None] * (
                s[update][:, :, None] * s[update][:, None, :]
            )
        x, f, g = np.where(moved[:, None], x_new, x), np.where(moved, f_new, f), np.where(
            moved[:, None], g_new, g
        )
    return x, f


class _Objective:
    """The Huber objective of a law on data `log_loss [S, n]` (one row per start/resample)."""

    def __init__(self, features, log_loss, delta):
        self.features, self.log_loss, self.delta = features, log_loss, delta

    def __call__(self, theta):
        return self.rows(theta, np.ones(theta.shape[0], bool))

    def rows(self, theta, rows):
        log_loss = self.log_loss if self.log_loss.shape[0] == 1 else self.log_loss[rows]
        log_pred, grad = _log_prediction(theta, self.features)
        loss, slope = _huber(log_pred - log_loss, self.delta)
        return np.sum(loss, axis=-1), np.einsum("sn,snp->sp", slope, grad)


def fit_from_grid(features, log_loss, grid, delta, starts):
    """The best of the local minima reached from the `starts` best rows of `grid [S, p]`."""
    objective = _Objective(features, log_loss[None], delta)
    if starts is not None and starts < len(grid):
        f0, _ = objective(grid)
        grid = grid[np.argsort(np.where(np.isfinite(f0), f0, np.inf), kind="stable")[:starts]]
    x, f = _bfgs(objective, grid)
    f = np.where(np.isfinite(f), f, np.inf)
    return x[int(np.argmin(f))]


def bootstrap(features, log_loss, theta, delta, resamples, seed):
    """Refits on `resamples` residual-bootstrap data sets, each started at `theta`."""
    fitted, _ = _log_prediction(theta[None], features)
    residuals = log_loss - fitted[0]
    # Centred, and widened by sqrt(n / (n - p)): a fit of p parameters leaves residuals
    # smaller than the noise (Davison & Hinkley 1997, the modified residuals).
    n, p = residuals.size, theta.size
    residuals = (residuals - residuals.mean()) * math.sqrt(n / (n - p))
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, residuals.size, size=(resamples, residuals.size))
    data = fitted + residuals[picks]  # [R, n]
    objective = _Objective(features, data, delta)
    x, f = _bfgs(objective, np.broadcast_to(theta, (resamples, theta.size)))
    return x[np.isfinite(f)]


def percentile_intervals(samples, names, level):
    lo, hi = 100 * (1 - level) / 2, 100 * (1 + level) / 2
    return {name: (float(np.percentile(samples[:, i], lo)), float(np.percentile(samples[:, i], hi)))
            for i, name in enumerate(names)}
