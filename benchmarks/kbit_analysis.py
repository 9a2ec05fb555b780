"""Tables and plots of the k-bit scaling study (benchmarks/kbit_scaling.py's results).

    python benchmarks/kbit_analysis.py          # reads benchmarks/results/kbit_scaling_models.jsonl

Writes benchmarks/results/kbit_scaling.json (the Pareto frontiers and comparisons below),
docs/kbit_scaling.png (loss against total model bits, one curve per k, per family and data
type) and the generated tables between `<!-- kbit_scaling_tables -->` markers in docs/kbit.md:
- the models: parameters, tokens, float and unigram validation loss;
- for each family, the Pareto frontier of (total bits, loss) over every size, k, data type and
  block size, and which k it is made of;
- at each model's 4-bit budget, the best k among the models that fit (Dettmers and
  Zettlemoyer's question);
- loss increase over float at equal k, data type and block size: unit-scaled against plain.
"""

import argparse
import json
import os
import sys
from collections import defaultdict

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks", "results")
DOCS = os.path.join(ROOT, "docs", "kbit.md")
PLOT = os.path.join(ROOT, "docs", "kbit_scaling.png")
FAMILIES = ("unit_scaled", "plain")


def load(path):
    with open(path) as f:
        entries = [json.loads(line) for line in f if line.strip()]
    latest = entries[-1]["settings"]
    return [e for e in entries if e["settings"] == latest]


def flat_rows(models):
    out = []
    for m in models:
        for r in m["rows"]:
            out.append(dict(r, family=m["family"], size=f"{m['layers']}x{m['width']}",
                            parameters=m["parameters"], float_val_loss=m["float_val_loss"],
                            unigram_val_loss=m["unigram_val_loss"]))
        # the unquantised model, counted at 16 bits a parameter, as Dettmers and Zettlemoyer do
        out.append(dict(bits=16, dtype="float16", block_size=None,
                        val_loss=m["float_val_loss"], total_bits=16 * m["parameters"],
                        bits_per_parameter=16.0, family=m["family"],
                        size=f"{m['layers']}x{m['width']}", parameters=m["parameters"],
                        float_val_loss=m["float_val_loss"]))
    return out


def pareto(rows):
    """The rows no other row beats in both total bits and loss, by increasing bits."""
    frontier, best = [], float("inf")
    for r in sorted(rows, key=lambda r: (r["total_bits"], r["val_loss"])):
        if r["val_loss"] < best:
            frontier.append(r)
            best = r["val_loss"]
    return frontier


def best_at_budgets(rows, models):
    """At each model's 4-bit budget (its total bits at k=4, blocks of 64, as Dettmers and
    Zettlemoyer's comparisons): the least loss over the rows that fit, per k, and the winner."""
    out = []
    for m in models:
        budget = next(r["total_bits"] for r in m["rows"]
                      if r["bits"] == 4 and r["block_size"] == 64 and r["dtype"] == "int")
        per_k = {}
        for r in rows:
            if r["total_bits"] <= budget * 1.0001:
                k = r["bits"]
                if k not in per_k or r["val_loss"] < per_k[k]["val_loss"]:
                    per_k[k] = r
        winner = min(per_k.values(), key=lambda r: r["val_loss"])
        out.append(dict(size=f"{m['layers']}x{m['width']}", budget_bits=budget,
                        best_bits=winner["bits"], best=describe(winner),
                        best_loss=winner["val_loss"],
                        loss_per_k={k: per_k[k]["val_loss"] for k in sorted(per_k)}))
    return out


def falling(models):
    """The models of a family up to the first whose float loss is not below the previous one's:
    the part of the family where more parameters helped (an undertrained larger model would
    make every low-k curve look good by comparison)."""
    out = models[:1]
    for m in models[1:]:
        if m["float_val_loss"] >= out[-1]["float_val_loss"]:
            break
        out.append(m)
    return out


def curves_at_budgets(models, dtype, block, points=9):
    """Dettmers and Zettlemoyer's reading: for each k, the curve of loss against log total
    bits through the family's sizes (data type `dtype`, blocks `block`), interpolated
    linearly in log bits at `points` budgets across the sizes' range; per budget that at least
    three k (one of them 3 or 4) reach, each k's loss there."""
    curves = {}
    for k in range(3, 9):
        pts = sorted((r["total_bits"], r["val_loss"]) for m in models for r in m["rows"]
                     if r["bits"] == k and r["dtype"] == dtype and r["block_size"] == block)
        curves[k] = pts
    curves[16] = sorted((16 * m["parameters"], m["float_val_loss"]) for m in models)
    low = min(c[0][0] for c in curves.values())
    high = max(c[-1][0] for c in curves.values())
    out = []
    for budget in np.geomspace(low, high, points):
        losses = {}
        for k, pts in curves.items():
            bits, loss = zip(*pts)
            if bits[0] <= budget <= bits[-1]:
                losses[k] = float(np.interp(np.log(budget), np.log(bits), loss))
        # a budget only some low or only some high k reach compares nothing: skip it
        if sum(k <= 8 for k in losses) < 3 or not {3, 4} & set(losses):
            continue
        best = min(losses, key=losses.get)
        out.append(dict(budget_bits=int(budget), loss_per_k=losses, best_bits=best))
    return out


def describe(r):
    block = "channel" if r["block_size"] is None else r["block_size"]
    if r["bits"] == 16:
        return f"{r['size']} float16"
    return f"{r['size']} {r['dtype']}{r['bits']}/{block}"


def increases(rows, relative=False):
    """{(family, bits, dtype, block): [loss - float loss, per size]}; with `relative`, that
    increase as a fraction of what the float model gained over the unigram model."""
    out = defaultdict(list)
    for r in rows:
        if r["bits"] != 16:
            gain = r["unigram_val_loss"] - r["float_val_loss"] if relative else 1.0
            out[(r["family"], r["bits"], r["dtype"], r["block_size"])].append(
                (r["val_loss"] - r["float_val_loss"]) / gain)
    return out


def plot(models_by_family, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dtypes = ("int", "float", "quantile")
    fig, axes = plt.subplots(len(models_by_family), len(dtypes), figsize=(13, 4.2 * len(
        models_by_family)), sharex=True, sharey=True, squeeze=False)
    colours = plt.cm.viridis([i / 6 for i in range(7)])
    for row, (family, models) in enumerate(models_by_family.items()):
        for col, dtype in enumerate(dtypes):
            ax = axes[row][col]
            for i, k in enumerate(range(3, 9)):
                pts = sorted(
                    (r["total_bits"], r["val_loss"]) for m in models for r in m["rows"]
                    if r["bits"] == k and r["dtype"] == dtype and r["block_size"] == 64)
                ax.plot(*zip(*pts), "o-", color=colours[i], label=f"k={k}", ms=3)
            pts = sorted((16 * m["parameters"], m["float_val_loss"]) for m in models)
            ax.plot(*zip(*pts), "k--", label="float (16 bits)", lw=1)
            ax.set_xscale("log")
            ax.set_title(f"{family}, {dtype}, blocks of 64")
            ax.grid(alpha=0.3)
            if col == 0:
                ax.set_ylabel("validation loss (nats/char)")
            if row == len(models_by_family) - 1:
                ax.set_xlabel("total model bits")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def tables(report, models):
    lines = ["| family | size | parameters | steps | tokens | float val loss | unigram | "
             "val loss at 1/4, 1/2, 3/4 of training | train s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for m in models:
        curve = ", ".join(f"{v:.3f}" for _, v in m["curve"][:-1])
        lines.append(f"| {m['family']} | {m['layers']}x{m['width']} | {m['parameters']:,} | "
                     f"{m['steps']} | {m['tokens'] / 1e6:.2f}M | {m['float_val_loss']:.4f} | "
                     f"{m['unigram_val_loss']:.4f} | {curve} | {m['train_seconds']:.0f} |")
    for family, frontier in report["pareto"].items():
        lines += ["", f"Pareto frontier, {family} (every size, k, data type, block size; "
                  "float16 = the float model at 16 bits):", "",
                  "| total bits | configuration | val loss |", "|---|---|---|"]
        lines += [f"| {r['total_bits']:,} | {r['config']} | {r['val_loss']:.4f} |"
                  for r in frontier]
    for family, rows in report["budgets"].items():
        lines += ["", f"Best k at each model's 4-bit budget (int4, blocks of 64), {family}: "
                  "least loss over every configuration of every size that fits, per k:", "",
                  "| budget (bits) | " + " | ".join(f"k={k}" for k in (3, 4, 5, 6, 7, 8, 16))
                  + " | best |", "|---|" + "---|" * 8]
        for b in rows:
            cells = [f"{b['loss_per_k'][k]:.4f}" if k in b["loss_per_k"] else "-"
                     for k in (3, 4, 5, 6, 7, 8, 16)]
            lines.append(f"| {b['budget_bits']:,} ({b['size']} at 4 bits) | "
                         + " | ".join(cells) + f" | k={b['best_bits']}: {b['best']} |")
    for family, entry in report.get("curves", {}).items():
        if len(entry["sizes"]) < 2:
            continue
        lines += ["", f"One curve per k through {family}'s sizes where loss falls with size "
                  f"({', '.join(entry['sizes'])}), interpolated in log bits; at each budget, "
                  "each k's loss where its curve reaches it and the lowest k:", "",
                  "| data type / blocks | budget (bits) | " + " | ".join(
                      f"k={k}" for k in (3, 4, 5, 6, 7, 8, 16)) + " | lowest |",
                  "|---|---|" + "---|" * 8]
        for key in ("quantile/64", "int/64", "float/64", "int/None"):
            for b in entry[key]:
                cells = [f"{b['loss_per_k'][k]:.3f}" if k in b["loss_per_k"] else "-"
                         for k in (3, 4, 5, 6, 7, 8, 16)]
                lines.append(f"| {key.replace('None', 'channel')} | {b['budget_bits']:,} | "
                             + " | ".join(cells) + f" | k={b['best_bits']} |")
    lines += ["", "Loss increase over float (nats/char), mean over the sizes both families "
              "have, at equal k, data type and block size (unit-scaled / plain):", "",
              "| k | dtype | blocks of 32 | 64 | 128 | per channel |", "|---|---|---|---|---|---|"]
    inc = report["increase"]
    for k in range(3, 9) if len(inc) == 2 else ():
        for dtype in ("int", "float", "quantile"):
            cells = []
            for block in ("32", "64", "128", "None"):
                u, p = inc["unit_scaled"][f"{k}/{dtype}/{block}"], inc["plain"][
                    f"{k}/{dtype}/{block}"]
                cells.append(f"{u:.3f} / {p:.3f}")
            lines.append(f"| {k} | {dtype} | " + " | ".join(cells) + " |")
    picks = ((3, "int", 64), (3, "quantile", 64), (4, "int", 64), (4, "float", 64),
             (4, "quantile", 64), (4, "int", None), (5, "int", 64), (6, "int", 64))
    lines += ["", "Loss increase over float per model (nats/char):", "",
              "| family | size | float loss | " + " | ".join(
                  f"{d}{k}/{'channel' if b is None else b}" for k, d, b in picks) + " |",
              "|---|---|---|" + "---|" * len(picks)]
    for m in models:
        got = {(r["bits"], r["dtype"], r["block_size"]): r["val_loss"] for r in m["rows"]}
        lines.append(f"| {m['family']} | {m['layers']}x{m['width']} | "
                     f"{m['float_val_loss']:.4f} | " + " | ".join(
                         f"{got[p] - m['float_val_loss']:+.3f}" for p in picks) + " |")
    rel = report.get("relative_increase", {})
    if len(rel) == 2:
        lines += ["", "The same increase as a share of what each float model gained over the "
                  "unigram model (unigram loss - float loss), mean over the shared sizes "
                  "(unit-scaled / plain):", "",
                  "| k | dtype | blocks of 32 | 64 | 128 | per channel |",
                  "|---|---|---|---|---|---|"]
        for k in range(3, 7):
            for dtype in ("int", "float", "quantile"):
                cells = [f"{100 * rel['unit_scaled'][f'{k}/{dtype}/{b}']:.1f}% / "
                         f"{100 * rel['plain'][f'{k}/{dtype}/{b}']:.1f}%"
                         for b in ("32", "64", "128", "None")]
                lines.append(f"| {k} | {dtype} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", default=os.path.join(RESULTS, "kbit_scaling_models.jsonl"))
    parser.add_argument("--output", default=os.path.join(RESULTS, "kbit_scaling.json"))
    parser.add_argument("--no-docs", action="store_true")
    args = parser.parse_args(argv)
    models = load(args.input)
    by_family = {f: [m for m in models if m["family"] == f] for f in FAMILIES}
    by_family = {f: sorted(ms, key=lambda m: m["parameters"]) for f, ms in by_family.items()
                 if ms}
    report = {"settings": models[-1]["settings"], "pareto": {}, "budgets": {},
              "increase": {}}
    common = set.intersection(*[{(m["layers"], m["width"]) for m in ms}
                                for ms in by_family.values()])
    for family, ms in by_family.items():
        rows = flat_rows(ms)
        report["pareto"][family] = [dict(total_bits=r["total_bits"], config=describe(r),
                                         bits=r["bits"], val_loss=r["val_loss"])
                                    for r in pareto(rows)]
        report["budgets"][family] = best_at_budgets(rows, ms)
        part = falling(ms)
        report.setdefault("curves", {})[family] = {
            "sizes": [f"{m['layers']}x{m['width']}" for m in part],
            **{f"{d}/{b}": curves_at_budgets(part, d, b) for d, b in
               (("quantile", 64), ("int", 64), ("float", 64), ("int", None))}}
        shared = flat_rows([m for m in ms if (m["layers"], m["width"]) in common])
        report["increase"][family] = {
            f"{k}/{d}/{b}": round(sum(v) / len(v), 4)
            for (_, k, d, b), v in increases(shared).items()}
        report.setdefault("relative_increase", {})[family] = {
            f"{k}/{d}/{b}": round(sum(v) / len(v), 4)
            for (_, k, d, b), v in increases(shared, relative=True).items()}
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(report, f, indent=1)
        f.write("\n")
    plot(by_family, PLOT)
    text = tables(report, [m for ms in by_family.values() for m in ms])
    print(text)
    if not args.no_docs:
        with open(DOCS) as f:
            doc = f.read()
        start, end = "<!-- kbit_scaling_tables -->", "<!-- /kbit_scaling_tables -->"
        if start in doc:
            head, rest = doc.split(start, 1)
            _, tail = rest.split(end, 1)
            with open(DOCS, "w") as f:
                f.write(head + start + "\n" + text + "\n" + end + tail)
        else:
            print(f"docs/kbit.md has no {start} marker: tables printed only", file=sys.stderr)


if __name__ == "__main__":
    main()
