"""The scales of the unit-scaled LSTM and GRU (Python floats, from a mean-field derivation).

The cells and the sequence op are in `keras_unitscale.ops.recurrent` (which re-exports these).

Mean-field derivation (in full, with measurements, in docs/lstm.md). Assume each gate
pre-activation N(0, 1) (the LSTM forget gate N(b_f, 1)), and gates, states and gradients
independent per unit:
- forward: the stationary variance of the carried state (`c`, or the GRU's `h`) gives
  `E[h^2]`, and the output constant is `kappa = E[h^2] ** -0.5`;
- pre-activations: fan-in scales `s_x = sqrt((1 - eta2) / d)` on the x-path and
  `s_h = kappa sqrt(eta2 / u)` on the h-path (h has std `1 / kappa`), so their sum is unit;
- backward: a gradient `G_h` on h sends `eta2 kappa^2 Q G_h` back one step through the
  recurrent kernel (Q: per-unit sum over the gates). `eta2` is chosen so that this gain is
  `RHO = 1/4`: the naive `eta2 = 1/2` makes the LSTM chaotic (gradients explode with length);
  the quarter keeps a margin for the time correlations the mean field drops. The GRU's
  direct carry adds `E[z^2]` to its gain, `rho`. A unit gradient on every output then gives
  `G_h = kappa^2 / (1 - rho)` for any length;
- input gradient: variance `s^2 u Q_x G_h`; the unit-gradient scale
  `(u Q_x kappa^2 / (1 - rho)) ** -0.5` is tied to `s_x` by `constraint`, as in `linear`;
- weight gradients: a weight gradient sums, over the `n` (batch x time) positions receiving
  an upstream gradient, its unit input times a gate pre-activation gradient. Those have mean
  square `Q_x G_h / gates` per gate (`gates` = 4 for the LSTM, 3 for the GRU), not one, so
  `n ** -0.5` alone leaves W's gradient at std `sqrt(Q_x kappa^2 / (gates (1 - rho)))`
  (0.724 for the LSTM, 0.998 for the GRU). The factor
  `omega = (gates (1 - rho) / (Q_x kappa^2)) ** 0.5` (1.381 LSTM, 1.002 GRU) divides it out:
  `omega n ** -0.5` for W and b, `omega kappa sqrt(Q_x / Q_h) n ** -0.5` for U (its input h
  has std `1 / kappa`; the GRU's reset gate shrinks the gradient reaching U_h, the LSTM has
  `Q_x = Q_h`). Backward only: the forward pass does not depend on it. The mean field drops
  correlations along time: U's input h and the bias's gate gradients (the candidate's through
  the cell's carry) are correlated from step to step, so over long sequences U's gradient
  comes out up to 1.3 and the bias's up to 1.6 (docs/lstm.md); W's input is independent per
  step, and its gradient is unit at every length.
"""

import collections
import functools
import math

import numpy as np

from keras_unitscale.ops.constraints import apply_constraint

RHO = 0.25
"""Mean-field backward gain per step through the recurrent kernel (module docstring)."""

RecurrentScales = collections.namedtuple(
    "RecurrentScales",
    ["input", "input_grad", "recurrent", "output", "recurrent_weight_grad", "weight_grad"],
)
RecurrentScales.__doc__ = """Scales of a unit-scaled LSTM or GRU (Python floats).

`input`, `input_grad`: forward scale of the x-path and the scale of the input gradient (tied
by the constraint); `recurrent`: the h-path scale (forward = backward); `output`: kappa;
`recurrent_weight_grad`: U's factor relative to W's (`kappa sqrt(Q_x / Q_h)`);
`weight_grad`: the factor on every weight gradient (W, U, b) on top of `n ** -0.5` (`omega`).
"""


def _expect(fn, mean=0.0, var=1.0):
    # E[fn(z)] for z ~ N(mean, var), by a Riemann sum on a fine grid (tails < 1e-30).
    t = np.linspace(-12.0, 12.0, 48_001)
    w = np.exp(-0.5 * t * t) * (t[1] - t[0]) / math.sqrt(2.0 * math.pi)
    return float(np.sum(w * fn(mean + math.sqrt(var) * t)))


def _sig(z):
    return 1.0 / (1.0 + np.exp(-z))


def _dsig(z):
    return _sig(z) * (1.0 - _sig(z))


def _dtanh(z):
    return 1.0 - np.tanh(z) ** 2


@functools.lru_cache(maxsize=None)
def lstm_moments(forget_bias=0.0):
    """`(kappa, eta2, q, var_c)` of the LSTM's mean-field derivation for a forget-gate bias.

    Example:
    >>> from keras_unitscale.ops.recurrent_scales import lstm_moments
    >>> kappa, eta2, q, var_c = lstm_moments(0.0)
    >>> round(kappa, 2), round(eta2, 3)
    (5.2, 0.159)
    """
    bf = float(forget_bias)
    sig2 = _expect(lambda z: _sig(z) ** 2)
    tanh2 = _expect(lambda z: np.tanh(z) ** 2)
    forget2 = _expect(lambda z: _sig(z) ** 2, bf)
    var_c = sig2 * tanh2 / (1.0 - forget2)
    tanh_c2 = _expect(lambda c: np.tanh(c) ** 2, 0.0, var_c)
    kappa = (sig2 * tanh_c2) ** -0.5
    # Backward, per unit of E[(dL/dh)^2]: the output gate, then the cell (with its carry).
    dsig2 = _expect(lambda z: _dsig(z) ** 2)
    dsig_f2 = _expect(lambda z: _dsig(z) ** 2, bf)
    dtanh2 = _expect(lambda z: _dtanh(z) ** 2)
    cell = sig2 * _expect(lambda c: _dtanh(c) ** 2, 0.0, var_c) / (1.0 - forget2)
    q = tanh_c2 * dsig2 + cell * (var_c * dsig_f2 + tanh2 * dsig2 + sig2 * dtanh2)
    eta2 = RHO / (kappa**2 * q)
    return kappa, eta2, q, var_c


def lstm_scales(input_dim, units, forget_bias=0.0, constraint="to_output_scale"):
    """The LSTM's `RecurrentScales` for inputs of size `input_dim` and `units` cells.

    Example:
    >>> from keras_unitscale.ops.recurrent_scales import lstm_scales
    >>> s = lstm_scales(128, 128)
    >>> round(s.output, 2), round(s.input, 3), round(s.recurrent, 3)
    (5.2, 0.081, 0.183)
    """
    kappa, eta2, q, _ = lstm_moments(forget_bias)
    return _scales(input_dim, units, kappa, eta2, q, q, RHO, constraint, gates=4)


def _gru_terms(eta2):
    sig2 = _expect(lambda z: _sig(z) ** 2)
    dsig2 = _expect(lambda z: _dsig(z) ** 2)
    # The candidate's h-path is gated by r: its pre-activation variance is below one.
    var_a = 1.0 - eta2 * (1.0 - sig2)
    tanh2 = _expect(lambda a: np.tanh(a) ** 2, 0.0, var_a)
    dtanh2 = _expect(lambda a: _dtanh(a) ** 2, 0.0, var_a)
    var_h = sig2 * tanh2 / (1.0 - sig2)  # (1 - z) has the law of z
    kappa = var_h**-0.5
    # Per unit of E[(dL/dh)^2]: update gate (h_{t-1} - tanh(a)), candidate, reset gate.
    update = (var_h + tanh2) * dsig2
    candidate = sig2 * dtanh2
    q_h = update + candidate * (eta2 * dsig2 + sig2)  # through U: U_h sees r * d(a)
    q_x = update + candidate * (1.0 + eta2 * dsig2)  # through W
    return kappa, q_h, q_x, sig2


@functools.lru_cache(maxsize=None)
def gru_moments():
    """`(kappa, eta2, q_x, rho)` of the GRU's mean-field derivation.

    `eta2` solves `eta2 kappa^2 q_h = RHO` (kappa and q_h depend on it through the reset
    gate); `rho = E[z^2] + RHO` is the total backward gain per step, carry included.

    Example:
    >>> from keras_unitscale.ops.recurrent_scales import gru_moments
    >>> kappa, eta2, q_x, rho = gru_moments()
    >>> round(kappa, 2), round(eta2, 2), round(rho, 2)
    (2.74, 0.48, 0.54)
    """
    lo, hi = 0.0, 1.0
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        kappa, q_h, _, _ = _gru_terms(mid)
        lo, hi = (mid, hi) if mid * kappa**2 * q_h < RHO else (lo, mid)
    eta2 = 0.5 * (lo + hi)
    kappa, _, q_x, sig2 = _gru_terms(eta2)
    return kappa, eta2, q_x, sig2 + RHO


def gru_scales(input_dim, units, constraint="to_output_scale"):
    """The GRU's `RecurrentScales` for inputs of size `input_dim` and `units` cells.

    Example:
    >>> from keras_unitscale.ops.recurrent_scales import gru_scales
    >>> s = gru_scales(128, 128)
    >>> round(s.output, 2), round(s.input, 3), round(s.recurrent, 3)
    (2.74, 0.064, 0.167)
    """
    kappa, eta2, q_x, rho = gru_moments()
    q_h = RHO / (eta2 * kappa**2)
    return _scales(input_dim, units, kappa, eta2, q_x, q_h, rho, constraint, gates=3)


def _scales(input_dim, units, kappa, eta2, q_x, q_h, rho, constraint, gates):
    fwd = ((1.0 - eta2) / input_dim) ** 0.5
    bwd = (units * q_x * kappa**2 / (1.0 - rho)) ** -0.5
    x_fwd, x_bwd = apply_constraint(constraint, fwd, bwd)
    # U's input h has std 1 / kappa, and its output gradient is sqrt(q_h / q_x) times W's
    # (the GRU's reset gate multiplies U_h's; equal for the LSTM).
    u_grad = kappa * (q_x / q_h) ** 0.5
    # Every gate pre-activation gradient has mean square `q_x G_h / gates`, with
    # `G_h = kappa^2 / (1 - rho)`: this makes W's (and b's, and through u_grad U's) unit.
    omega = (gates * (1.0 - rho) / (q_x * kappa**2)) ** 0.5
    return RecurrentScales(x_fwd, x_bwd, kappa * (eta2 / units) ** 0.5, kappa, u_grad, omega)
