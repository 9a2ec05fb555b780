"""Our core-TensorFlow WordPiece path against KerasHub's TF Text one: same ids? how fast?

    python benchmarks/core_tokenizers.py [--repeats 5]

`WordPieceTokenizer`'s TensorFlow path (`keras_unitscale/tokenizers/_core_word_piece.py`)
uses core TensorFlow ops only, so that exports load without TF Text. This checks it against
KerasHub's own TF Text path (`FastWordpieceTokenizer`, `regex_split`, `case_fold_utf8`) on
the same tokenizer: ids and detokenized texts on every English target of
`load_zh_en_pairs()` and 3,000 Chinese reviews (`load_chinese_sentiment()`), each with a
vocabulary learnt on it, in several configurations; then times both paths, traced once, on
batches of 64 (a `tf.data` training batch, a serving request) and on the whole corpus in one
call. Prints the results and writes benchmarks/results/core_tokenizers.json.
"""

import argparse
import json
import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras_hub  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_unitscale.datasets import load_chinese_sentiment, load_zh_en_pairs  # noqa: E402
from keras_unitscale.tokenizers import WordPieceTokenizer, train_word_piece  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def tf_text_twin(tokenizer):
    """The same tokenizer running KerasHub's TF Text path (the reference)."""
    twin = WordPieceTokenizer.from_config(tokenizer.get_config())
    twin.set_vocabulary(tokenizer.get_vocabulary())
    hub = keras_hub.tokenizers.WordPieceTokenizer
    hub._set_vocabulary_tf(twin)
    twin._tokenize_tf = hub._tokenize_tf.__get__(twin)
    twin._detokenize_tf = hub._detokenize_tf.__get__(twin)
    return twin


def best_time(fn, batches, repeats):
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for batch in batches:
            fn(batch)
        best = min(best, time.perf_counter() - start)
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    splits = load_zh_en_pairs()
    english = [str(t) for _, en in splits for t in en]
    (reviews, _), _, _ = load_chinese_sentiment()
    chinese = [str(t) for t in reviews[:3000]]
    corpora = {"english": english, "chinese": chinese}
    results = {"machine": f"{os.cpu_count()} CPU cores, {platform.machine()}",
               "tensorflow": tf.__version__, "keras_hub": keras_hub.__version__, "runs": []}
    for corpus, texts in corpora.items():
        vocabulary = train_word_piece(texts, 2000).get_vocabulary()
        for options in ({"lowercase": True}, {"lowercase": False},
                        {"lowercase": True, "strip_accents": True}):
            ours = WordPieceTokenizer(vocabulary=vocabulary, **options)
            reference = tf_text_twin(ours)
            data = tf.constant(texts)
            a = tf.function(ours.tokenize)(data)
            b = tf.function(reference.tokenize)(data)
            same_ids = sum(x == y for x, y in zip(a.to_list(), b.to_list()))
            texts_a = tf.function(ours.detokenize)(b).numpy().tolist()
            texts_b = tf.function(reference.detokenize)(b).numpy().tolist()
            same_texts = sum(x == y for x, y in zip(texts_a, texts_b))
            run = {"corpus": corpus, "options": options, "texts": len(texts),
                   "same_ids": same_ids, "same_detokenized": same_texts}
            if options == {"lowercase": True}:
                batches = [data[i:i + 64] for i in range(0, len(texts), 64)]
                spec = tf.TensorSpec([None], tf.string)
                for name, tokenizer in (("core", ours), ("tf_text", reference)):
                    fn = tf.function(tokenizer.tokenize, input_signature=[spec])
                    fn(batches[0])
                    run[f"{name}_batches_of_64_s"] = best_time(fn, batches, args.repeats)
                    run[f"{name}_one_call_s"] = best_time(fn, [data], args.repeats)
                run["ratio_batches_of_64"] = (run["core_batches_of_64_s"]
                                              / run["tf_text_batches_of_64_s"])
                run["ratio_one_call"] = run["core_one_call_s"] / run["tf_text_one_call_s"]
            print(json.dumps(run))
            results["runs"].append(run)
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "core_tokenizers.json"), "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
