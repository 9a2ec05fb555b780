"""Keras' int8 and int4 quantisation of the shipped presets: held-out quality and sizes.

    python benchmarks/quantize_presets.py                  # all four trained presets
    python benchmarks/quantize_presets.py zh_sentiment_lstm --limit 512
    KERAS_BACKEND=tensorflow python benchmarks/quantize_presets.py \
        --output benchmarks/results/quantize_presets_tensorflow.json

Each preset is loaded with `from_preset`, evaluated on the test split it was measured on
(tools/train_presets.py: the seeded splits of `keras_unitscale.datasets`, seed 0) in float,
then reloaded and quantised with `model.quantize(mode)` for each mode: `int8` (per-channel
abs-max), `int4` (Keras' default, blocks of 128 with a zero point) and `int4/-1` (int4 per
channel). Reported: test loss and accuracy (`evaluate`; for the language models accuracy is
next-token accuracy), the bytes of the weights in memory, and the bytes of the weight files
of the preset the quantised model saves (`save_to_preset`); for the translator also corpus
BLEU and chrF of greedy translations of the test split (tools/train_presets.py's code). Writes
benchmarks/results/quantize_presets.json (or `--output`; each preset's entry is merged into
what the file holds when it is written) and the table in docs/kbit.md between the markers
named after the output file.
"""

import argparse
import json
import os
import platform
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
RESULTS = os.path.join(ROOT, "benchmarks", "results", "quantize_presets.json")
PRESETS = ("zh_sentiment_lstm", "zh_sentiment_transformer", "zh_reviews_gpt", "zh_en_translator")
MODES = ("float", "int8", "int4", "int4/-1")


def test_split(name, limit):
    """`(x, y)` of the preset's test split, as tools/train_presets.py evaluated it."""
    from keras_unitscale.datasets import load_chinese_sentiment, load_zh_en_pairs

    if name.startswith("zh_sentiment"):
        _, _, (x, y) = load_chinese_sentiment(seed=0)
        return list(x[:limit]), y[:limit]
    if name == "zh_reviews_gpt":
        _, _, (x, _) = load_chinese_sentiment(seed=0)
        return list(x[:limit]), None
    _, _, (zh, en) = load_zh_en_pairs(seed=0)
    return {"encoder_text": list(zh[:limit]), "decoder_text": list(en[:limit])}, None


def task_class(name):
    from keras_unitscale.models import CausalLM, Seq2SeqLM, TextClassifier

    return {"zh_reviews_gpt": CausalLM, "zh_en_translator": Seq2SeqLM}.get(name, TextClassifier)


def weight_bytes(model):
    import keras

    return int(sum(
        keras.ops.convert_to_numpy(v).nbytes for v in model.weights
    ))


def file_bytes(model):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "preset")
        model.save_to_preset(path)
        return int(sum(
            os.path.getsize(os.path.join(path, f)) for f in os.listdir(path)
            if f.endswith(".weights.h5")
        ))


def measure(name, mode, x, y):
    import keras


    keras.utils.set_random_seed(0)
    model = task_class(name).from_preset(name)
    if mode != "float":
        if mode == "int4/-1":
            config = keras.quantizers.Int4QuantizationConfig(block_size=-1)
            model.quantize(config=config)
        else:
            model.quantize(mode)
    model.compile()
    start = time.perf_counter()
    result = model.evaluate(x, y, batch_size=64, verbose=0, return_dict=True)
    seconds = time.perf_counter() - start
    row = {
        "loss": round(float(result["loss"]), 4),
        "accuracy": round(float(result.get("accuracy", result.get("sparse_categorical_accuracy",
                                                               float("nan")))), 4),
        "weight_bytes": weight_bytes(model),
        "file_bytes": file_bytes(model),
        "evaluate_seconds": round(seconds, 1),
    }
    if name == "zh_en_translator":
        # The preset card's metric code: greedy `generate` of the test split in batches of
        # 64, corpus BLEU and chrF (sacrebleu, lowercased, WordPiece spacing tidied).
        from tools.train_presets import _translation_scores

        start = time.perf_counter()
        row["bleu"], row["chrf"] = _translation_scores(model, (x,))
        row["generate_seconds"] = round(time.perf_counter() - start, 1)
    return row


DOCS = os.path.join(ROOT, "docs", "kbit.md")


def table(report):
    """The markdown table of a report, for docs/kbit.md."""
    lines = [
        f"Measured on {report['machine']}, {report['backend']} backend, Keras "
        f"{report['keras']}.",
        "",
        "| preset | test examples | mode | test loss | accuracy | drop (points) | "
        "weights in memory | weight files |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, entry in report["presets"].items():
        base = entry["modes"]["float"]
        for mode, row in entry["modes"].items():
            drop = "" if mode == "float" else f"{row['accuracy_drop_points']:+.2f}"
            memory = row["weight_bytes"] / 2**20
            files = row["file_bytes"] / 2**20
            ratio = "" if mode == "float" else (
                f" ({row['weight_bytes'] / base['weight_bytes']:.2f}x)")
            lines.append(
                f"| {name} | {entry['test_examples']:,} | {mode} | {row['loss']:.4f} | "
                f"{row['accuracy']:.4f} | {drop} | {memory:.2f} MiB{ratio} | {files:.2f} MiB |"
            )
    translator = report["presets"].get("zh_en_translator", {}).get("modes", {})
    if all("bleu" in row for row in translator.values()) and translator:
        lines += ["", "zh_en_translator, greedy translations of the test split (corpus BLEU "
                  "and chrF, the preset card's metric code):", "",
                  "| mode | BLEU | chrF | BLEU change | chrF change |", "|---|---|---|---|---|"]
        base = translator["float"]
        for mode, row in translator.items():
            change = ("| |" if mode == "float" else
                      f"| {row['bleu'] - base['bleu']:+.2f} | {row['chrf'] - base['chrf']:+.2f} |")
            lines.append(f"| {mode} | {row['bleu']:.2f} | {row['chrf']:.2f} {change}")
    return "\n".join(lines)


def write_docs(report, path=DOCS, marker="quantize_presets"):
    """Rewrites the table between `<!-- marker -->` and `<!-- /marker -->` (the marker is the
    results file's name: quantize_presets, quantize_presets_tensorflow)."""
    with open(path) as f:
        text = f.read()
    start, end = f"<!-- {marker} -->", f"<!-- /{marker} -->"
    if start not in text:
        print(f"{path} has no {start} marker: table not written", flush=True)
        return
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    with open(path, "w") as f:
        f.write(head + start + "\n" + table(report) + "\n" + end + tail)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("presets", nargs="*", default=list(PRESETS))
    parser.add_argument("--limit", type=int, default=None,
                        help="evaluate on the first N test examples only (default: all)")
    parser.add_argument("--output", default=RESULTS)
    parser.add_argument("--docs-only", action="store_true",
                        help="only rewrite docs/kbit.md's table from --output")
    args = parser.parse_args(argv)
    marker = os.path.splitext(os.path.basename(args.output))[0]
    if args.docs_only:
        with open(args.output) as f:
            write_docs(json.load(f), marker=marker)
        return
    import keras

    results = {}
    if os.path.exists(args.output):
        with open(args.output) as f:
            results = json.load(f).get("presets", {})
    for name in args.presets:
        x, y = test_split(name, args.limit)
        rows = {}
        for mode in MODES:
            rows[mode] = measure(name, mode, x, y)
            print(name, mode, rows[mode], flush=True)
        base = rows["float"]
        for mode in MODES[1:]:
            rows[mode]["accuracy_drop_points"] = round(
                100 * (base["accuracy"] - rows[mode]["accuracy"]), 2)
            rows[mode]["loss_increase"] = round(rows[mode]["loss"] - base["loss"], 4)
        n = len(x["encoder_text"]) if isinstance(x, dict) else len(x)
        if os.path.exists(args.output):  # keep what another run wrote meanwhile
            with open(args.output) as f:
                results = json.load(f).get("presets", {})
        results[name] = {"test_examples": n, "modes": rows}
        report = {  # written after each preset: a long run keeps what it measured
            "machine": f"{platform.machine()} CPU, {os.cpu_count()} cores (shared)",
            "backend": keras.backend.backend(),
            "keras": keras.__version__,
            "presets": results,
        }
        os.makedirs(os.path.dirname(args.output), exist_ok=True)
        with open(args.output, "w") as f:
            json.dump(report, f, indent=2)
            f.write("\n")
        print("wrote", args.output, flush=True)
    write_docs(report, marker=marker)


if __name__ == "__main__":
    main()
