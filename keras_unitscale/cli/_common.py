"""What the commands share: the one-line error, progress lines, the task classes by what they
declare, loading a task preset and reading a data file.

No task is named here: the tasks are `keras_unitscale._tasks.registered_tasks()`, and each
declares the command that runs it (`command`), how its data file is read (`data_columns`,
`label_column`) and its preprocessor (`preprocessor_for`).
"""

import os
import sys


class CommandError(ValueError):
    """An error the user can fix, reported as one line."""


def progress(message):
    """One line on stderr before a step that takes seconds."""
    print(f"keras-unitscale: {message} ...", file=sys.stderr, flush=True)


# The tasks ---------------------------------------------------------------------------------
def tasks():
    """`{class name: task class}` of the registered tasks."""
    from keras_unitscale._tasks import registered_tasks

    return registered_tasks()


def task_argument(cls):
    """The name `train` takes for a task: its module's (`text_classifier` for
    `keras_unitscale.models.text_classifier.TextClassifier`).

    >>> import keras_unitscale as ku
    >>> task_argument(ku.models.Seq2SeqLM)
    'seq2seq_lm'
    """
    return cls.__module__.rsplit(".", 1)[-1]


def task_by_argument(argument):
    """The registered task whose `task_argument` is `argument`."""
    return next(cls for cls in tasks().values() if task_argument(cls) == argument)


def column_names():
    """The `--<name>-column` options the tasks' data files need, with the tasks using each."""
    names = {}
    for task_name, cls in tasks().items():
        for name in [*cls.data_columns.values(), cls.label_column]:
            if name is not None:
                names.setdefault(name, []).append(task_name)
    return names


# Loading a task preset ---------------------------------------------------------------------
def load_task(preset, command=None):
    """Loads the task of `preset`; with `command`, refuses a task that another command runs,
    naming that one."""
    from keras_unitscale.models import Task
    from keras_unitscale.presets import load_preset, read_metadata

    stored = read_metadata(preset).get("task")
    if stored is None:
        raise CommandError(
            f"{preset} holds only a backbone (an untrained architecture?); "
            "`keras-unitscale train` makes a task preset from it."
        )
    cls = Task
    if command is not None:
        cls = next(task for task in tasks().values() if task.command == command)
        if stored != cls.__name__:
            other = getattr(tasks().get(stored), "command", None) or "evaluate"
            raise CommandError(
                f"`{command}` needs a {cls.__name__} preset; {preset} holds a {stored} "
                f"(use `keras-unitscale {other}`)."
            )
    progress(f"loading {preset}")
    return load_preset(cls, preset)


# Data files --------------------------------------------------------------------------------
def _data_kind(path):
    extension = os.path.splitext(path)[1].lower()
    if extension in (".csv", ".tsv", ".txt"):
        return extension[1:]
    raise CommandError(f"--data must be a .csv, .tsv or .txt file; received {path}.")


def _option(name):
    return f"{name}_column"


def read_data(args, cls, label_names=None):
    """`(x, y)` for the task class `cls` from `--data`, as its `data_columns` and
    `label_column` say (y is None when the targets come from the text). A .txt file is one
    text a line, for a task with one text column and no labels."""
    from keras_unitscale.datasets import load_csv, load_text_file

    if not os.path.isfile(args.data):
        raise CommandError(f"--data {args.data}: no such file.")
    kind = _data_kind(args.data)
    delimiter = "\t" if kind == "tsv" else ","
    columns = {name: getattr(args, _option(column)) for name, column in cls.data_columns.items()}
    if kind == "txt":
        if len(columns) > 1 or cls.label_column is not None:
            needed = [*columns.values()]
            if cls.label_column is not None:
                needed.append(getattr(args, _option(cls.label_column)))
            raise CommandError(
                f"{args.data}: a {cls.__name__} reads {len(needed)} columns; give a .csv or "
                f".tsv file with columns {', '.join(map(repr, needed))}."
            )
        return load_text_file(args.data), None
    if cls.label_column is not None:
        (column,) = columns.values()
        return load_csv(args.data, column, getattr(args, _option(cls.label_column)), delimiter,
                        label_names=label_names)
    texts = {name: load_csv(args.data, column, delimiter=delimiter)
             for name, column in columns.items()}
    return (next(iter(texts.values())) if len(texts) == 1 else texts), None


def labels_to_ids(y):
    """String labels to ids (sorted names); integer labels pass through."""
    import numpy as np

    if y.dtype.kind in "iu":
        return y, None
    names = sorted({str(label) for label in y})
    index = {name: i for i, name in enumerate(names)}
    return np.array([index[str(label)] for label in y], dtype="int32"), names


def add_data_columns(parser):
    """`--<name>-column` for every column a task's data file has, and `--batch-size`."""
    for name, users in column_names().items():
        parser.add_argument(f"--{name}-column", default=name,
                            help=f"CSV/TSV column of the {name} for {', '.join(users)} "
                                 f"(default {name!r})")
    parser.add_argument("--batch-size", type=int, default=32, help="batch size (default 32)")
