"""Fits and plots of a sweep's CSV, and the driver behind `keras-unitscale scaling-law`.

`fit_sweep(rows)` fits, for each model in the rows, the two-variable law to every run and the
one-variable law in parameters to the runs at the largest token count; `plot_sweep` draws
the losses against parameters and against tokens with those fits (matplotlib, the "plot"
extra); `main(argv)` parses the arguments, runs the sweep (`run_sweep` over
`keras_unitscale.scaling.lm` cells), then fits, prints, writes JSON and plots.
"""

import argparse
import json
import math
import os

import numpy as np

from keras_unitscale.scaling.fit import fit_chinchilla, fit_power_law

PUBLISHED = {
    "kaplan_alpha_n": 0.076,  # Kaplan et al. 2020, L(N) at convergence, non-embedding N
    "hoffmann_alpha": 0.34,  # Hoffmann et al. 2022, approach 3
    "hoffmann_beta": 0.28,
}


def _column(rows, name):
    return np.array([float(row[name]) for row in rows])


def fit_sweep(rows, param_column="non_embedding_params", resamples=1000, seed=0):
    """`{model: {"power_law": PowerLawFit or None, "chinchilla": ChinchillaFit or None,
    "largest_tokens": int}}` for the models in `rows` (dicts as `read_rows` returns).

    A fit needs more runs than it has parameters; a model with too few runs gets `None`.
    Runs whose loss is not finite (diverged) are left out.
    """
    if param_column not in ("params", "non_embedding_params"):
        raise ValueError(
            "`param_column` must be 'params' or 'non_embedding_params'; received "
            f"{param_column!r:.80}."
        )
    fits = {}
    for model in sorted({row["model"] for row in rows}):
        runs = [r for r in rows if r["model"] == model and math.isfinite(float(r["val_loss"]))]
        if not runs:
            continue
        largest = max(int(r["tokens"]) for r in runs)
        at_largest = [r for r in runs if int(r["tokens"]) == largest]
        result = {"largest_tokens": largest, "power_law": None, "chinchilla": None}
        if len(at_largest) > 3:
            result["power_law"] = fit_power_law(
                _column(at_largest, param_column), _column(at_largest, "val_loss"),
                resamples=resamples, seed=seed)
        if len(runs) > 5:
            result["chinchilla"] = fit_chinchilla(
                _column(runs, param_column), _column(runs, "tokens"), _column(runs, "val_loss"),
                resamples=resamples, seed=seed)
        fits[model] = result
    return fits


def fits_to_json(fits):
    """The fits as JSON-ready dicts (values and intervals)."""
    out = {}
    for model, result in fits.items():
        entry = {"largest_tokens": result["largest_tokens"]}
        for kind in ("power_law", "chinchilla"):
            fit = result[kind]
            if fit is None:
                entry[kind] = None
                continue
            names = ("E", "A", "alpha") if kind == "power_law" else (
                "E", "A", "B", "alpha", "beta")
            entry[kind] = {
                **{name: getattr(fit, name) for name in names},
                "intervals": {k: list(v) for k, v in fit.intervals.items()},
                "level": fit.level,
                "num_points": fit.num_points,
            }
        out[model] = entry
    return out


def plot_sweep(rows, fits, path, param_column="non_embedding_params"):
    """Writes a figure to `path`: for each model, loss against parameters (one curve per token
    count) and against tokens (one curve per size), the points measured and the lines fitted
    (`L(N, D)` where there is a two-variable fit; `L(N)` at the largest token count too)."""
    try:
        import matplotlib
    except ImportError:
        raise ImportError(
            "Plots need matplotlib: pip install 'keras-unitscale[plot]'."
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = sorted(fits) or sorted({row["model"] for row in rows})
    fig, axes = plt.subplots(len(models), 2, figsize=(11, 4 * len(models)), squeeze=False)
    for i, model in enumerate(models):
        runs = [r for r in rows if r["model"] == model and math.isfinite(float(r["val_loss"]))]
        result = fits.get(model, {})
        chinchilla, power = result.get("chinchilla"), result.get("power_law")
        n_all, d_all = _column(runs, param_column), _column(runs, "tokens")
        loss = _column(runs, "val_loss")
        n_grid = np.geomspace(n_all.min() / 1.5, n_all.max() * 1.5, 100)
        d_grid = np.geomspace(d_all.min() / 1.5, d_all.max() * 1.5, 100)
        ax = axes[i][0]
        colors = plt.cm.viridis(np.linspace(0, 0.9, len(set(d_all))))
        for color, d in zip(colors, sorted(set(d_all))):
            keep = d_all == d
            ax.plot(n_all[keep], loss[keep], "o", color=color, label=f"D = {int(d):,} tokens")
            if chinchilla is not None:
                ax.plot(n_grid, chinchilla.predict(n_grid, d), "-", color=color, alpha=0.7)
        if power is not None:
            ax.plot(n_grid, power.predict(n_grid), "k--",
                    label=f"L(N) at largest D: alpha = {power.alpha:.3f}")
        ax.set(xscale="log", yscale="log", xlabel=param_column.replace("_", " "),
               ylabel="validation loss (nats/char)", title=f"{model}: loss against parameters")
        ax.legend(fontsize=8)
        ax = axes[i][1]
        sizes = sorted(set(n_all))
        colors = plt.cm.plasma(np.linspace(0, 0.9, len(sizes)))
        for color, n in zip(colors, sizes):
            keep = n_all == n
            name = runs[int(np.flatnonzero(keep)[0])]["size"]
            ax.plot(d_all[keep], loss[keep], "o", color=color, label=f"{name} (N = {int(n):,})")
            if chinchilla is not None:
                ax.plot(d_grid, chinchilla.predict(n, d_grid), "-", color=color, alpha=0.7)
        title = f"{model}: loss against tokens"
        if chinchilla is not None:
            title += f"\nL(N, D): alpha = {chinchilla.alpha:.2f}, beta = {chinchilla.beta:.2f}"
        ax.set(xscale="log", yscale="log", xlabel="training tokens",
               ylabel="validation loss (nats/char)")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8)
    fig.tight_layout()
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _csv_list(kind):
    def parse(text):
        try:
            return [kind(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")

    return parse


def add_arguments(parser):
    """The arguments of the sweep (shared by the benchmark script and the CLI command)."""
    parser.add_argument("--csv", required=True, help="the sweep's CSV (resumed if it exists)")
    parser.add_argument("--models", type=_csv_list(str), default=["transformer", "mlp"],
                        help="models to sweep (default transformer,mlp)")
    parser.add_argument("--transformer-sizes", type=_csv_list(str),
                        default=["w16", "w32", "w64", "w128"],
                        help="transformer sizes (default w16,w32,w64,w128)")
    parser.add_argument("--mlp-sizes", type=_csv_list(str),
                        default=["h16", "h32", "h64", "h128", "h256"],
                        help="MLP sizes (default h16,h32,h64,h128,h256)")
    parser.add_argument("--tokens", type=_csv_list(int), default=[32768, 65536, 131072],
                        help="training tokens of the runs (default 32768,65536,131072)")
    parser.add_argument("--seeds", type=_csv_list(int), default=[0], help="seeds (default 0)")
    parser.add_argument("--corpus", default="python_docs", choices=["python_docs",
                                                                    "peoples_daily"],
                        help="character corpus (default python_docs)")
    parser.add_argument("--vocabulary-size", type=int, default=128,
                        help="most frequent characters kept (default 128)")
    parser.add_argument("--batch-size", type=int, default=16, help="batch size (default 16)")
    parser.add_argument("--sequence-length", type=int, default=32,
                        help="tokens per training window (default 32)")
    parser.add_argument("--learning-rate", type=float, default=2.0,
                        help="u-muP base learning rate (default 2.0)")
    parser.add_argument("--param-column", default="non_embedding_params",
                        choices=["non_embedding_params", "params"],
                        help="the N of the fits (default non_embedding_params)")
    parser.add_argument("--resamples", type=int, default=1000,
                        help="bootstrap refits for the intervals (default 1000)")
    parser.add_argument("--json", help="write the fits here")
    parser.add_argument("--plot", help="write the figure here (needs matplotlib)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def run(args):
    """Runs the sweep that `args` describes, then fits, prints, writes and plots."""
    from keras_unitscale.scaling import lm
    from keras_unitscale.scaling.sweep import run_sweep

    sizes = {"transformer": args.transformer_sizes, "mlp": args.mlp_sizes}
    for model in args.models:
        if model not in lm.SIZES:
            raise ValueError(f"`--models` must name models of {sorted(lm.SIZES)}; got {model!r}.")
        sizes.setdefault(model, sorted(lm.SIZES[model]))
        for size in sizes[model]:
            if size not in lm.SIZES[model]:
                raise ValueError(
                    f"Unknown size {size!r} of model {model!r}; known: {sorted(lm.SIZES[model])}."
                )
    if not args.tokens or min(args.tokens) <= 0:
        raise ValueError(f"`--tokens` must be positive counts; got {args.tokens}.")
    cells = lm.grid_cells(args.models, sizes, args.tokens, args.seeds)

    def run_cell(cell):
        return lm.train_cell(
            cell, corpus=args.corpus, vocabulary_size=args.vocabulary_size,
            batch_size=args.batch_size, sequence_length=args.sequence_length,
            learning_rate=args.learning_rate)

    rows, ran = run_sweep(args.csv, cells, run_cell, progress=not args.no_progress)
    wanted = {(c["model"], c["size"], str(c["tokens"]), str(c["seed"])) for c in cells}
    rows = [r for r in rows if (r["model"], r["size"], r["tokens"], r["seed"]) in wanted]
    print(f"{ran} runs trained, {len(rows) - ran} found in {args.csv}")
    fits = fit_sweep(rows, args.param_column, resamples=args.resamples)
    for model, result in fits.items():
        print(f"{model}: L(N) at D = {result['largest_tokens']:,}: {result['power_law']}")
        print(f"{model}: L(N, D): {result['chinchilla']}")
    if args.json:
        payload = {"fits": fits_to_json(fits), "published": PUBLISHED,
                   "param_column": args.param_column, "csv": args.csv}
        tmp = args.json + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(payload, f, indent=2)
        os.replace(tmp, args.json)
    if args.plot:
        plot_sweep(rows, fits, args.plot, args.param_column)
        print(f"plot written to {args.plot}")
    return rows, fits


def main(argv=None):
    parser = add_arguments(argparse.ArgumentParser(description=__doc__.split("\n")[0]))
    run(parser.parse_args(argv))
    return 0
