"""The commands that train and measure a task: `train` and `evaluate`, for any registered
task, from what it declares (its data columns, its preprocessor)."""

import os

from keras_unitscale.cli._common import (
    CommandError,
    add_data_columns,
    labels_to_ids,
    load_task,
    read_data,
    task_argument,
    task_by_argument,
    tasks,
)


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

    cls = task_by_argument(args.task)
    task_name = cls.__name__
    keras.utils.set_random_seed(args.seed)
    metadata = read_metadata(args.preset)
    label_names = metadata.get("label_names") if metadata.get("task") == task_name else None
    x, y = read_data(args, cls, label_names)
    extra = {}
    if y is not None:
        y, names = labels_to_ids(y)
        label_names = label_names or names
        if label_names:
            extra["label_names"] = label_names
    if metadata.get("task") == task_name:  # Fine-tune a trained task with its preprocessor.
        model = load_preset(cls, args.preset)
    elif metadata.get("task"):
        raise CommandError(
            f"--preset {args.preset} is a {metadata['task']} preset, not a {task_name} one; "
            "start from an architecture preset (e.g. transformer_tiny) or a preset of this task."
        )
    else:
        overrides = {"preprocessor": _new_preprocessor(args, cls, x)}
        if cls.label_column is not None:  # class labels: the head's size and names
            overrides["num_classes"] = len(label_names) if label_names else int(y.max()) + 1
            if label_names:
                overrides["label_names"] = list(label_names)
        model = load_preset(cls, args.preset, **overrides)
    output = args.output or f"{args.task}_preset"
    if os.path.isdir(output) and os.listdir(output) and not args.overwrite:
        raise CommandError(f"--output {output} is not empty; pass --overwrite to replace it.")
    model.fit(x, y, epochs=args.epochs, batch_size=args.batch_size,
              validation_split=args.validation_split)
    save_preset(model, output, overwrite=args.overwrite, metadata=extra)
    print(f"saved a {task_name} preset ({model.count_params():,} parameters) to {output}")


def _new_preprocessor(args, cls, x):
    """`cls`'s preprocessor with a new tokenizer (`--tokenizer`) for each of its text inputs,
    built from that input's texts in `x`."""
    from keras_unitscale import tokenizers

    kind = {"jieba": tokenizers.JiebaTokenizer, "character": tokenizers.CharacterTokenizer}
    make = kind[args.tokenizer]
    texts = [x[name] for name in cls.text_inputs] if len(cls.text_inputs) > 1 else [x]
    return cls.preprocessor_for([make.from_corpus(t) for t in texts], args.sequence_length)


def _evaluate(args):
    from keras_unitscale.presets import read_metadata

    model = load_task(args.preset)
    x, y = read_data(args, type(model), read_metadata(args.preset).get("label_names"))
    if y is not None and y.dtype.kind not in "iu":
        raise CommandError(
            f"{args.data}: labels must be class ids, or names listed in the preset's "
            "metadata (label_names)."
        )
    results = model.evaluate(x, y, batch_size=args.batch_size, verbose=0, return_dict=True)
    for name, value in results.items():
        print(f"{name}: {float(value):.4f}")


def add_commands(commands):
    p = commands.add_parser(
        "train", help="train a task on a CSV/TSV/text file and save it as a preset",
        description="Train TASK on --data, starting from --preset: an untrained architecture "
                    "(a new tokenizer is built from the data) or a preset of the same task "
                    "(fine-tuned with its tokenizer). Classifiers read --text-column and "
                    "--label-column; language models a .txt file (one text a line) or "
                    "--text-column; translators --source-column and --target-column.")
    p.add_argument("task", choices=sorted(task_argument(cls) for cls in tasks().values()),
                   help="the kind of model")
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
    add_data_columns(p)
    p.set_defaults(run=_train)

    p = commands.add_parser("evaluate", help="evaluate a task preset on a data file",
                            description="Print the preset's loss and metrics on --data (same "
                                        "columns as `train`).")
    p.add_argument("preset", help="a preset name or directory")
    p.add_argument("--data", required=True, help="a .csv, .tsv or .txt file")
    add_data_columns(p)
    p.set_defaults(run=_evaluate)
