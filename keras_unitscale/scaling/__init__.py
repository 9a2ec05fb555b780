"""Scaling laws: fits (`fit_power_law`, `fit_chinchilla`, `compute_optimal`), a resumable
sweep runner (`run_sweep`) and plots (`keras_unitscale.scaling.report.plot_sweep`, with matplotlib).

Example:
>>> import numpy as np
>>> from keras_unitscale import scaling
>>> n = np.logspace(4, 8, 9)
>>> round(scaling.fit_power_law(n, 2.0 + 30.0 * n ** -0.25, resamples=0).alpha, 3)
0.25
"""

from keras_unitscale.scaling.fit import (
    ChinchillaFit,
    ComputeOptimal,
    PowerLawFit,
    compute_optimal,
    fit_chinchilla,
    fit_power_law,
)
from keras_unitscale.scaling.sweep import FIELDS, KEY_FIELDS, read_rows, run_sweep
