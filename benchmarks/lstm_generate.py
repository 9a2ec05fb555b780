"""Generation time of a tiny LSTM `CausalLM` on a short prompt, in two source trees.

Measures `generate()` of the same small model (the same seed, so the same weights) with
`keras_unitscale` imported from each of two checkouts (`--trees A B`, e.g. a worktree of the
commit before a change and the working tree): the first call (compiling the decoding
function and running it) and the median of `--calls` later calls (the compiled function).
Children of the two trees alternate (ABAB...) so that a busy machine slows both alike; the
ratios B / A of the medians over `--rounds` rounds are printed and written to
benchmarks/results/lstm_generate.json.

    git worktree add --detach /tmp/ku_before HEAD~1
    .venv/bin/python benchmarks/lstm_generate.py --trees /tmp/ku_before . --backend both
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

TEXTS = ["我喜欢这本书", "这本书很好", "我很喜欢", "今天天气很好", "他们在看书"] * 4


def _measure(args):
    import keras
    import numpy as np

    import keras_unitscale as ku
    from keras_unitscale.preprocessors import CausalLMPreprocessor
    from keras_unitscale.tokenizers import CharacterTokenizer

    keras.utils.set_random_seed(0)
    preprocessor = CausalLMPreprocessor(CharacterTokenizer.from_corpus(TEXTS), args.length)
    backbone = ku.models.LSTMBackbone(
        vocabulary_size=preprocessor.tokenizer.vocabulary_size(), hidden_dim=args.hidden,
        num_layers=args.layers, bidirectional=False,
    )
    model = ku.models.CausalLM(backbone, preprocessor)
    model.compile()
    prompts = ["我"] * args.batch
    start = time.perf_counter()
    first_text = model.generate(prompts, stop_token_ids=None)
    first = time.perf_counter() - start
    times = []
    for _ in range(args.calls):
        start = time.perf_counter()
        text = model.generate(prompts, stop_token_ids=None)
        times.append(time.perf_counter() - start)
    assert text == first_text
    return {"first_s": first, "call_s": statistics.median(times), "text": first_text[0],
            "source": os.path.dirname(os.path.dirname(ku.__file__))}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", action="store_true")
    parser.add_argument("--trees", nargs=2, metavar=("A", "B"), default=None)
    parser.add_argument("--backend", choices=["tensorflow", "jax", "both"], default="both")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--length", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--layers", type=int, default=2)
    args = parser.parse_args()
    options = [f"--calls={args.calls}", f"--batch={args.batch}", f"--length={args.length}",
               f"--hidden={args.hidden}", f"--layers={args.layers}"]
    if args.child:
        print(json.dumps(_measure(args)))
        return
    trees = [os.path.abspath(t) for t in (args.trees or [".", "."])]
    backends = ["tensorflow", "jax"] if args.backend == "both" else [args.backend]
    results = {}
    for backend in backends:
        runs = {tree: [] for tree in trees}
        for _ in range(args.rounds):
            for tree in trees:
                env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3",
                           PYTHONPATH=tree)
                out = subprocess.run(
                    [sys.executable, os.path.abspath(__file__), "--child", *options],
                    env=env, capture_output=True, text=True, check=True, cwd="/tmp",
                )
                runs[tree].append(json.loads(out.stdout.strip().splitlines()[-1]))
        a, b = (runs[tree] for tree in trees)
        for run, tree in zip((a, b), trees):
            assert all(r["source"] == tree for r in run), (tree, run)
        summary = {
            key: {"A": statistics.median(r[key] for r in a),
                  "B": statistics.median(r[key] for r in b)}
            for key in ("first_s", "call_s")
        }
        for value in summary.values():
            value["ratio_B_over_A"] = value["B"] / value["A"]
        summary["same_text"] = all(x["text"] == y["text"] for x, y in zip(a, b))
        results[backend] = summary
        print(backend, json.dumps(summary))
    results["trees"] = {"A": trees[0], "B": trees[1]}
    results["options"] = options
    os.makedirs(os.path.join(os.path.dirname(__file__), "results"), exist_ok=True)
    with open(os.path.join(os.path.dirname(__file__), "results", "lstm_generate.json"), "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
