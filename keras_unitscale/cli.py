"""The `keras-unitscale` command: presets, predict, translate, generate, train, evaluate,
export and demo.

Imports of Keras and the models happen inside each command, so `--help` stays quick. Errors
a user can fix come out as one line, `keras-unitscale: error: ...`, with exit status 1
(argparse's usage errors exit with 2). Steps that take seconds (loading a preset, the first
generation, an export) print a progress line to stderr. TensorFlow's, XLA's and absl's log
lines and TensorFlow's and JAX's Python warnings are silenced unless `--verbose`
(`keras_unitscale._quiet`).

Example:
>>> from keras_unitscale.cli import main
>>> main(["presets", "--task", "Seq2SeqLM"])  # doctest: +ELLIPSIS
transformer_tiny ...
0
"""

import argparse
import os
import sys

from keras_unitscale import _quiet

TASKS = {
    "text_classifier": "TextClassifier",
    "causal_lm": "CausalLM",
    "seq2seq_lm": "Seq2SeqLM",
}


class CommandError(ValueError):
    """An error the user can fix, reported as one line."""


# Progress lines -----------------------------------------------------------------------------
def _progress(message):
    """One line on stderr before a step that takes seconds."""
    print(f"keras-unitscale: {message} ...", file=sys.stderr, flush=True)


# Helpers ------------------------------------------------------------------------------------
def _task_class(name):
    from keras_unitscale.models.causal_lm import CausalLM
    from keras_unitscale.models.seq2seq_lm import Seq2SeqLM
    from keras_unitscale.models.task import Task
    from keras_unitscale.models.text_classifier import TextClassifier

    return {"TextClassifier": TextClassifier, "CausalLM": CausalLM, "Seq2SeqLM": Seq2SeqLM,
            "Task": Task}[name]


def _load_task(preset, expected=None, command=None):
    """Loads the task of `preset`; with `expected`, refuses other kinds with a hint."""
    from keras_unitscale.presets import load_preset, read_metadata

    stored = read_metadata(preset).get("task")
    if stored is None:
        raise CommandError(
            f"{preset} holds only a backbone (an untrained architecture?); "
            "`keras-unitscale train` makes a task preset from it."
        )
    if expected is not None and stored != expected:
        hints = {"TextClassifier": "predict", "CausalLM": "generate", "Seq2SeqLM": "translate"}
        raise CommandError(
            f"`{command}` needs a {expected} preset; {preset} holds a {stored} "
            f"(use `keras-unitscale {hints.get(stored, 'evaluate')}`)."
        )
    _progress(f"loading {preset}")
    return load_preset(_task_class(expected or "Task"), preset)


def _data_kind(path):
    extension = os.path.splitext(path)[1].lower()
    if extension in (".csv", ".tsv", ".txt"):
        return extension[1:]
    raise CommandError(f"--data must be a .csv, .tsv or .txt file; received {path}.")


def _read_data(args, task_name, label_names=None):
    """`(x, y)` for `task_name` from `--data` (y is None for the language models)."""
    from keras_unitscale.datasets import load_csv, load_text_file

    if not os.path.isfile(args.data):
        raise CommandError(f"--data {args.data}: no such file.")
    delimiter = "\t" if _data_kind(args.data) == "tsv" else ","
    if task_name == "TextClassifier":
        if _data_kind(args.data) == "txt":
            raise CommandError(
                f"{args.data}: a classifier needs texts and labels; give a .csv or .tsv file "
                f"with columns {args.text_column!r} and {args.label_column!r}."
            )
        x, y = load_csv(args.data, args.text_column, args.label_column, delimiter,
                        label_names=label_names)
        return x, y
    if task_name == "CausalLM":
        if _data_kind(args.data) == "txt":
            return load_text_file(args.data), None
        return load_csv(args.data, args.text_column, delimiter=delimiter), None
    if _data_kind(args.data) == "txt":
        raise CommandError(
            f"{args.data}: a translator needs source and target texts; give a .csv or .tsv "
            f"file with columns {args.source_column!r} and {args.target_column!r}."
        )
    source = load_csv(args.data, args.source_column, delimiter=delimiter)
    target = load_csv(args.data, args.target_column, delimiter=delimiter)
    return {"encoder_text": source, "decoder_text": target}, None


def _labels_to_ids(y):
    """String labels to ids (sorted names); integer labels pass through."""
    import numpy as np

    if y.dtype.kind in "iu":
        return y, None
    names = sorted({str(label) for label in y})
    index = {name: i for i, name in enumerate(names)}
    return np.array([index[str(label)] for label in y], dtype="int32"), names


# Commands ---------------------------------------------------------------------------------
def _presets(args):
    from keras_unitscale.presets import list_presets

    presets = list_presets(args.task)
    width = max(map(len, presets), default=0)
    for name, description in presets.items():
        print(f"{name:<{width}}  {description}")
    missing = sorted(set(list_presets(args.task, include_unavailable=True)) - set(presets))
    if missing:
        print(f"\nnot trained yet (tools/train_presets.py): {', '.join(missing)}")


def _predict(args):
    import numpy as np

    from keras_unitscale.presets import read_metadata

    classifier = _load_task(args.preset, "TextClassifier", "predict")
    names = classifier.label_names or read_metadata(args.preset).get("label_names")
    logits = classifier.predict(list(args.texts), verbose=0)
    probabilities = np.exp(logits - logits.max(axis=-1, keepdims=True))
    probabilities /= probabilities.sum(axis=-1, keepdims=True)
    for text, row in zip(args.texts, probabilities):
        label = int(row.argmax())
        name = names[label] if names and label < len(names) else str(label)
        print(f"{name}\t{row[label]:.3f}\t{text}")


def _translate(args):
    translator = _load_task(args.preset, "Seq2SeqLM", "translate")
    _progress("translating (the first call compiles the decoder: seconds)")
    for translation in translator.generate(list(args.texts), max_length=args.max_length):
        print(translation)


def _generate(args):
    import keras

    model = _load_task(args.preset, "CausalLM", "generate")
    keras.utils.set_random_seed(args.seed)
    _progress("generating (the first call compiles the decoder: seconds)")
    for text in model.generate(list(args.prompts), max_length=args.max_length,
                               sampler=_sampler(args)):
        print(text)


def _sampler(args):
    """The sampler of `--sampler`, with `--top-k` / `--top-p` where they apply."""
    if args.sampler in ("greedy", "random"):
        return args.sampler
    if args.top_k is not None and args.top_k < 1:
        raise CommandError(f"--top-k must be a positive integer; received {args.top_k}.")
    if args.top_p is not None and not 0.0 < args.top_p <= 1.0:
        raise CommandError(f"--top-p must be in (0, 1]; received {args.top_p}.")
    import keras_hub

    if args.sampler == "top_k":
        return keras_hub.samplers.TopKSampler(k=args.top_k or 5, seed=args.seed)
    return keras_hub.samplers.TopPSampler(p=args.top_p or 0.1, seed=args.seed)


def _train(args):
    # Named as the user typed them (the library's own messages name `epochs=`, `batch_size=`).
    if args.epochs < 1:  # zero epochs would save an untrained preset
        raise CommandError(f"--epochs must be a positive integer; received {args.epochs}.")
    if args.batch_size < 1:
        raise CommandError(f"--batch-size must be a positive integer; received {args.batch_size}.")
    if not 0.0 <= args.validation_split < 1.0:
        raise CommandError("--validation-split must be in [0, 1) (the fraction of the data held "
                           f"out; 0 holds none out); received {args.validation_split}.")
    import keras

    from keras_unitscale.presets import load_preset, read_metadata, save_preset

    task_name = TASKS[args.task]
    keras.utils.set_random_seed(args.seed)
    metadata = read_metadata(args.preset)
    label_names = metadata.get("label_names") if metadata.get("task") == task_name else None
    x, y = _read_data(args, task_name, label_names)
    extra = {}
    if y is not None:
        y, names = _labels_to_ids(y)
        label_names = label_names or names
        if label_names:
            extra["label_names"] = label_names
    if metadata.get("task") == task_name:  # Fine-tune a trained task with its preprocessor.
        model = load_preset(_task_class(task_name), args.preset)
    elif metadata.get("task"):
        raise CommandError(
            f"--preset {args.preset} is a {metadata['task']} preset, not a {task_name} one; "
            "start from an architecture preset (e.g. transformer_tiny) or a preset of this task."
        )
    else:
        overrides = {"preprocessor": _new_preprocessor(args, task_name, x)}
        if task_name == "TextClassifier":
            overrides["num_classes"] = len(label_names) if label_names else int(y.max()) + 1
            if label_names:
                overrides["label_names"] = list(label_names)
        model = load_preset(_task_class(task_name), args.preset, **overrides)
    output = args.output or f"{args.task}_preset"
    if os.path.isdir(output) and os.listdir(output) and not args.overwrite:
        raise CommandError(f"--output {output} is not empty; pass --overwrite to replace it.")
    model.fit(x, y, epochs=args.epochs, batch_size=args.batch_size,
              validation_split=args.validation_split)
    save_preset(model, output, overwrite=args.overwrite, metadata=extra)
    print(f"saved a {task_name} preset ({model.count_params():,} parameters) to {output}")


def _new_preprocessor(args, task_name, x):
    from keras_unitscale import preprocessors, tokenizers

    kind = {"jieba": tokenizers.JiebaTokenizer, "character": tokenizers.CharacterTokenizer}
    make = kind[args.tokenizer]
    length = args.sequence_length
    if task_name == "TextClassifier":
        return preprocessors.TextClassifierPreprocessor(make.from_corpus(x), length)
    if task_name == "CausalLM":
        return preprocessors.CausalLMPreprocessor(make.from_corpus(x), length)
    return preprocessors.Seq2SeqLMPreprocessor(
        make.from_corpus(x["encoder_text"]), make.from_corpus(x["decoder_text"]), length, length
    )


def _evaluate(args):
    from keras_unitscale.presets import read_metadata

    model = _load_task(args.preset)
    task_name = type(model).__name__
    x, y = _read_data(args, task_name, read_metadata(args.preset).get("label_names"))
    if y is not None and y.dtype.kind not in "iu":
        raise CommandError(
            f"{args.data}: labels must be class ids, or names listed in the preset's "
            "metadata (label_names)."
        )
    results = model.evaluate(x, y, batch_size=args.batch_size, verbose=0, return_dict=True)
    for name, value in results.items():
        print(f"{name}: {float(value):.4f}")


def _export(args):
    from keras_unitscale.export import serving_spec

    model = _load_task(args.preset)
    _progress(f"exporting to {os.path.join(args.directory, str(args.version))}")
    try:
        directory = model.export(args.directory, version=args.version, overwrite=args.overwrite)
    except FileExistsError:
        raise CommandError(
            f"{os.path.join(args.directory, str(args.version))} exists: pass --overwrite to "
            "replace it, or another --version."
        ) from None
    signatures = ", ".join(sorted(serving_spec(model)["signatures"]))
    print(f"exported {args.preset} to {directory} (signatures: {signatures})")


def _demo(args):
    from keras_unitscale import demo

    demo.main(epochs=args.epochs, train_size=args.train_size, export_dir=args.export_dir)


def _scaling_law(args):
    from keras_unitscale.scaling.report import run

    run(args)


# Parser -----------------------------------------------------------------------------------
def _add_data_columns(parser):
    parser.add_argument("--text-column", default="text",
                        help="CSV/TSV column of texts (default 'text')")
    parser.add_argument("--label-column", default="label",
                        help="CSV/TSV column of labels for a classifier (default 'label')")
    parser.add_argument("--source-column", default="source",
                        help="CSV/TSV column of source texts for a translator (default 'source')")
    parser.add_argument("--target-column", default="target",
                        help="CSV/TSV column of target texts for a translator (default 'target')")
    parser.add_argument("--batch-size", type=int, default=32, help="batch size (default 32)")


def build_parser():
    """The argument parser of `keras-unitscale` (one sub-command per job).

    >>> build_parser().parse_args(["predict", "zh_sentiment_lstm", "很好"]).texts
    ['很好']
    """
    parser = argparse.ArgumentParser(
        prog="keras-unitscale",
        description="Unit-scaled Keras models: presets, prediction, training and a demo.",
    )
    from keras_unitscale import __version__

    parser.add_argument("--version", action="version", version=f"keras-unitscale {__version__}")
    parser.add_argument("--verbose", action="store_true",
                        help="keep TensorFlow's, XLA's and JAX's own log lines and warnings "
                             "(silenced by default)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = commands.add_parser("presets", help="list the built-in presets",
                            description="List the built-in presets and their descriptions.")
    p.add_argument("--task", choices=sorted(TASKS.values()),
                   help="only the presets this task can load")
    p.set_defaults(run=_presets)

    p = commands.add_parser("predict", help="classify texts with a TextClassifier preset",
                            description="Print the label, its probability and the text, one "
                                        "line per text.")
    p.add_argument("preset", help="a preset name or directory")
    p.add_argument("texts", nargs="+", metavar="TEXT")
    p.set_defaults(run=_predict)

    p = commands.add_parser("translate", help="translate texts with a Seq2SeqLM preset",
                            description="Print one translation per line (greedy decoding).")
    p.add_argument("preset", help="a preset name or directory")
    p.add_argument("texts", nargs="+", metavar="TEXT")
    p.add_argument("--max-length", type=int, help="most tokens per translation")
    p.set_defaults(run=_translate)

    p = commands.add_parser("generate", help="continue prompts with a CausalLM preset",
                            description="Print each prompt and its continuation, one line "
                                        "per prompt.")
    p.add_argument("preset", help="a preset name or directory")
    p.add_argument("prompts", nargs="+", metavar="PROMPT")
    p.add_argument("--max-length", type=int, help="total tokens, prompt included")
    p.add_argument("--sampler", default="greedy", choices=["greedy", "top_k", "top_p", "random"],
                   help="decoding strategy (default greedy)")
    p.add_argument("--top-k", type=int,
                   help="with --sampler top_k: sample among the k likeliest tokens (default 5)")
    p.add_argument("--top-p", type=float,
                   help="with --sampler top_p: sample among the likeliest tokens whose "
                        "probabilities add up to p (default 0.1)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the sampler (default 0)")
    p.set_defaults(run=_generate)

    p = commands.add_parser(
        "train", help="train a task on a CSV/TSV/text file and save it as a preset",
        description="Train TASK on --data, starting from --preset: an untrained architecture "
                    "(a new tokenizer is built from the data) or a preset of the same task "
                    "(fine-tuned with its tokenizer). Classifiers read --text-column and "
                    "--label-column; language models a .txt file (one text a line) or "
                    "--text-column; translators --source-column and --target-column.")
    p.add_argument("task", choices=sorted(TASKS), help="the kind of model")
    p.add_argument("--data", required=True, help="a .csv, .tsv or .txt file")
    p.add_argument("--preset", default="transformer_tiny",
                   help="starting preset (default transformer_tiny)")
    p.add_argument("--output", help="preset directory to write (default ./TASK_preset)")
    p.add_argument("--overwrite", action="store_true", help="replace a preset in --output")
    p.add_argument("--epochs", type=int, default=3, help="training epochs (default 3)")
    p.add_argument("--validation-split", type=float, default=0.0,
                   help="fraction of --data held out for validation (default 0)")
    p.add_argument("--tokenizer", choices=["jieba", "character"], default="jieba",
                   help="tokenizer built for an architecture preset (default jieba)")
    p.add_argument("--sequence-length", type=int, default=64,
                   help="tokens per text for a new preprocessor (default 64)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    _add_data_columns(p)
    p.set_defaults(run=_train)

    p = commands.add_parser("evaluate", help="evaluate a task preset on a data file",
                            description="Print the preset's loss and metrics on --data (same "
                                        "columns as `train`).")
    p.add_argument("preset", help="a preset name or directory")
    p.add_argument("--data", required=True, help="a .csv, .tsv or .txt file")
    _add_data_columns(p)
    p.set_defaults(run=_evaluate)

    p = commands.add_parser("export", help="export a task preset for TF Serving",
                            description="Write the preset's task as a SavedModel in TF "
                                        "Serving's layout, DIRECTORY/VERSION/ (see "
                                        "docs/serving.md).")
    p.add_argument("preset", help="a preset name or directory")
    p.add_argument("directory", help="the model base path to write the version into")
    p.add_argument("--version", type=int, default=1, help="version directory (default 1)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing version")
    p.set_defaults(run=_export)

    p = commands.add_parser(
        "demo", help="the trained presets end to end: predict, fine-tune, export, reload",
        description="Scales at initialisation next to plain Keras; classify, translate and "
        "generate with the trained presets; fine-tune the classifier on the built-in review "
        "corpus; export it for TF Serving and reload it with TensorFlow alone.")
    p.add_argument("--epochs", type=int, default=1, help="fine-tuning epochs (default 1)")
    p.add_argument("--train-size", type=int, default=2000,
                   help="validation reviews to fine-tune on (default 2000: all 1,736)")
    p.add_argument("--export-dir", default=None,
                   help="where to export (default: a new temporary directory)")
    p.set_defaults(run=_demo)

    p = commands.add_parser(
        "scaling-law", help="sweep model sizes x training tokens, fit scaling laws and plot",
        description="Train character language models (transformer and MLP) of several sizes "
                    "on several token counts, one CSV row per run (rerun to resume), then fit "
                    "L(N) and L(N, D) with bootstrap intervals (see docs/scaling_laws.md).")
    from keras_unitscale.scaling.report import add_arguments

    add_arguments(p)
    p.set_defaults(run=_scaling_law)
    for sub in commands.choices.values():  # `--verbose` after the command name too
        sub.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS,
                         help="keep the libraries' own log lines and warnings")
    return parser


def main(argv=None):
    """Runs `keras-unitscale` with `argv` (default: the command line); returns the exit code.

    >>> main(["predict", "no_such_preset", "很好"])  # the error goes to stderr
    1
    """
    command_line = argv is None
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    verbose = "--verbose" in argv
    if not verbose:
        _quiet.quiet_libraries()
        if command_line:  # the installed command started this in `keras_unitscale/__init__`
            _quiet.filter_library_logs()  # (a caller's own stderr is left alone)
    try:
        return _run(build_parser().parse_args(argv))
    finally:
        if command_line:
            _quiet.stop_filtering()


def _run(args):
    try:
        args.run(args)
    except (ValueError, OSError, ImportError) as error:
        message = " ".join(str(error).split()) or type(error).__name__
        print(f"keras-unitscale: error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("keras-unitscale: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
