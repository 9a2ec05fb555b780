"""The commands that run a task preset on texts: `predict`, `translate`, `generate` (the
commands the tasks declare as theirs: `Task.command`)."""

from keras_unitscale.cli._common import CommandError, load_task, progress, tasks


def _predict(args):
    import numpy as np

    from keras_unitscale.presets import read_metadata

    classifier = load_task(args.preset, "predict")
    names = classifier.label_names or read_metadata(args.preset).get("label_names")
    logits = classifier.predict(list(args.texts), verbose=0)
    probabilities = np.exp(logits - logits.max(axis=-1, keepdims=True))
    probabilities /= probabilities.sum(axis=-1, keepdims=True)
    for text, row in zip(args.texts, probabilities):
        label = int(row.argmax())
        name = names[label] if names and label < len(names) else str(label)
        print(f"{name}\t{row[label]:.3f}\t{text}")


def _translate(args):
    translator = load_task(args.preset, "translate")
    progress("translating (the first call compiles the decoder: seconds)")
    for translation in translator.generate(list(args.texts), max_length=args.max_length):
        print(translation)


def _generate(args):
    import keras

    model = load_task(args.preset, "generate")
    keras.utils.set_random_seed(args.seed)
    progress("generating (the first call compiles the decoder: seconds)")
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


def _runs(command):
    """The name of the task that declares `command` as the one that runs it."""
    return next(name for name, cls in tasks().items() if cls.command == command)


def add_commands(commands):
    p = commands.add_parser("predict", help=f"classify texts with a {_runs('predict')} preset",
                            description="Print the label, its probability and the text, one "
                                        "line per text.")
    p.add_argument("preset", help="a preset name or directory")
    p.add_argument("texts", nargs="+", metavar="TEXT")
    p.set_defaults(run=_predict)

    p = commands.add_parser("translate", help=f"translate texts with a {_runs('translate')} preset",
                            description="Print one translation per line (greedy decoding).")
    p.add_argument("preset", help="a preset name or directory")
    p.add_argument("texts", nargs="+", metavar="TEXT")
    p.add_argument("--max-length", type=int, help="most tokens per translation")
    p.set_defaults(run=_translate)

    p = commands.add_parser("generate", help=f"continue prompts with a {_runs('generate')} preset",
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
