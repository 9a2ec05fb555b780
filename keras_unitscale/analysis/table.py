"""The scale table: its columns, the statistics of one tensor, a text printer and a plot.

`keras_unitscale.analysis.scales.track_scales` fills it (see there); `ScaleTable`,
`plot_scales`, `TRACKED_FORMATS` and `COLUMNS` are re-exported from that module.
"""

import numpy as np
from keras import ops

from keras_unitscale.ops.formats import get_format

TRACKED_FORMATS = ("fp16", "e4m3", "e5m2")
COLUMNS = (
    ("layer", "{}"),
    ("class", "{}"),
    ("direction", "{}"),
    ("std", "{:.3g}"),
    ("abs_max", "{:.3g}"),
) + tuple(
    (f"{fmt}_{kind}", "{:.2%}") for fmt in TRACKED_FORMATS for kind in ("underflow", "overflow")
)


class ScaleTable(list):
    """The rows of `track_scales`: a list of dicts, with a text printer.

    Each row has `layer`, `class`, `direction` (`"forward"` or `"backward"`), `std`,
    `abs_max`, and `{fp16,e4m3,e5m2}_{underflow,overflow}` fractions (plus `step` in a
    `ScaleTracker`'s history).

    Example:
    >>> from keras_unitscale.analysis import ScaleTable
    >>> table = ScaleTable([{"layer": "d", "class": "Dense", "direction": "forward",
    ...                      "std": 1.0, "abs_max": 4.2}])
    >>> print(table.to_text(columns=("layer", "direction", "std")))
    layer  direction  std
    d      forward    1
    """

    def to_text(self, columns=None):
        """The rows as an aligned text table (all known columns present in the rows)."""
        formats = dict(COLUMNS)
        formats.setdefault("step", "{}")
        if columns is None:
            present = {key for row in self for key in row}
            order = ["step"] + [name for name, _ in COLUMNS]
            columns = [name for name in order if name in present]
        cells = [list(columns)]
        for row in self:
            line = []
            for name in columns:
                value = row.get(name)
                line.append("-" if value is None else formats.get(name, "{}").format(value))
            cells.append(line)
        widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
        return "\n".join(
            "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells
        )

    def __str__(self):
        return self.to_text()

    def select(self, **conditions):
        """The rows whose fields equal `conditions`, e.g. `table.select(direction="forward")`."""
        return ScaleTable(r for r in self if all(r.get(k) == v for k, v in conditions.items()))


def tensor_stats(values):
    """Std, abs max and format under/overflow fractions of one tensor (or several)."""
    v = np.concatenate([np.asarray(ops.convert_to_numpy(t), np.float32).ravel() for t in values])
    row = {"std": float(np.std(v)) if v.size else float("nan")}
    finite = np.isfinite(v)
    row["abs_max"] = float(np.max(np.abs(v))) if v.size else float("nan")
    n = max(v.size, 1)
    with np.errstate(over="ignore", invalid="ignore"):
        for name in TRACKED_FORMATS:
            cast = v.astype(get_format(name).numpy_dtype()).astype(np.float32)
            row[f"{name}_underflow"] = float(np.sum((v != 0) & (cast == 0)) / n)
            row[f"{name}_overflow"] = float(np.sum(finite & ~np.isfinite(cast)) / n)
    return row


def plot_scales(table, path, title=None):
    """Writes a PNG of each layer's forward and backward std, with the formats' ranges.

    The y axis is logarithmic; shaded bands mark the normal range (smallest normal to largest
    finite value) of FP16, E4M3 and E5M2. If `table` holds several steps (a `ScaleTracker`
    history), the last step is plotted.

    Args:
        table: rows from `track_scales` (or `ScaleTracker.history`).
        path: where to write the PNG.
        title: optional plot title.

    Returns:
        `path`.

    Example:
    >>> import os, tempfile
    >>> from keras_unitscale.analysis import ScaleTable, plot_scales
    >>> rows = [{"layer": "d", "class": "Dense", "direction": d, "std": s, "abs_max": 3.0}
    ...         for d, s in (("forward", 1.0), ("backward", 0.5))]
    >>> path = plot_scales(ScaleTable(rows), os.path.join(tempfile.mkdtemp(), "scales.png"))
    >>> open(path, "rb").read(4) == b"\\x89PNG"
    True
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = list(table)
    if not rows:
        raise ValueError("`table` is empty: nothing to plot.")
    steps = [r["step"] for r in rows if "step" in r]
    if steps:
        rows = [r for r in rows if r.get("step") == steps[-1]]
    layers = list(dict.fromkeys(r["layer"] for r in rows))
    fig = Figure(figsize=(max(6.0, 0.45 * len(layers) + 3.0), 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for (name, color) in zip(TRACKED_FORMATS, ("tab:green", "tab:orange", "tab:purple")):
        f = get_format(name)
        ax.axhspan(f.min_normal, f.max_value, color=color, alpha=0.08, label=f"{name} normal range")
        for bound in (f.min_normal, f.max_value):
            ax.axhline(bound, color=color, lw=0.6, ls=":")
    for direction, marker in (("forward", "o"), ("backward", "s")):
        std = {r["layer"]: r["std"] for r in rows if r["direction"] == direction}
        xs = [i for i, name in enumerate(layers) if name in std]
        ax.plot(xs, [std[layers[i]] for i in xs], marker=marker, label=f"{direction} std")
    ax.set_yscale("log")
    ax.set_xticks(range(len(layers)))
    ax.set_xticklabels(layers, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("std")
    title = title or (f"Scales at step {steps[-1]}" if steps else "Scales")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100)
    return path
