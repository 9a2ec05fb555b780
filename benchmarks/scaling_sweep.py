"""A scaling-law sweep of character language models: sizes x training tokens, then the fits.

Each run trains one `CausalLM` (see `keras_unitscale.scaling.lm`: a transformer decoder or
the MLP backbone) on a corpus of `keras_unitscale.datasets.lm_corpora` for a number of
tokens and appends a row to `--csv` (resumable: rerun the same command after an
interruption and only the missing runs are trained). Then, per model, it fits
`L = E + A / N ** alpha + B / D ** beta` to all the runs and `L = E + A * N ** -alpha` to the
runs at the largest token count, with bootstrap intervals, prints them, writes them to
`--json`, and draws loss against parameters and against tokens with the fitted curves
(`--plot`, needs matplotlib).

    # the sweep of docs/scaling_laws.md (2-core CPU, JAX):
    KERAS_BACKEND=jax python benchmarks/scaling_sweep.py \
        --csv benchmarks/results/scaling_sweep.csv --json benchmarks/results/scaling_fits.json \
        --plot docs/scaling_laws.png
    # the same as `keras-unitscale scaling-law --csv ... --plot ...`
"""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from keras_unitscale.scaling.report import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
