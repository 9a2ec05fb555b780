"""The built-in presets: their names, descriptions and tasks, and where their files live.

Built-in presets are directories under `keras_unitscale/presets/builtin/<name>/`, shipped as
package data. Architecture presets (`transformer_*`, `lstm_small`, `mlp_small`) hold a
backbone's config and metadata only: loading one initialises the weights (they are
untrained). The trained presets are written by `tools/train_presets.py`; until it has been
run, they are registered but not available, and loading one says so.
"""

import difflib
import os

BUILTIN_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "builtin")

from keras_unitscale._tasks import registered_tasks

EVERY_TASK = None
"""In a preset's row: every registered task can load it (a transformer size each task builds
its own kind of backbone from; see a task's `architecture_backbones`)."""

# name -> (one-line description, names of the tasks that can load it or EVERY_TASK, trained?)
BUILTIN_PRESETS = {
    "transformer_tiny": (
        "untrained transformer, 2 layers, width 64, 2 heads (about 1.4M parameters)",
        EVERY_TASK, False,
    ),
    "transformer_small": (
        "untrained transformer, 4 layers, width 256, 4 heads (about 8.3M parameters)",
        EVERY_TASK, False,
    ),
    "transformer_base": (
        "untrained transformer, 12 layers, width 768, 12 heads (about 101M parameters)",
        EVERY_TASK, False,
    ),
    "lstm_small": (
        "untrained LSTM, 2 bidirectional layers, width 256 (about 5.9M parameters)",
        ("TextClassifier", "CausalLM"), False,
    ),
    "mlp_small": (
        "untrained MLP language model, window 8, width 256 (about 5.6M parameters)",
        ("CausalLM",), False,
    ),
    "zh_sentiment_lstm": (
        "Chinese review sentiment (negative/positive), bidirectional LSTM, jieba words",
        ("TextClassifier",), True,
    ),
    "zh_sentiment_transformer": (
        "Chinese review sentiment (negative/positive), transformer encoder, jieba words",
        ("TextClassifier",), True,
    ),
    "zh_en_translator": (
        "Chinese to English translation of short HSK sentences, transformer encoder-decoder",
        ("Seq2SeqLM",), True,
    ),
    "zh_reviews_gpt": (
        "Chinese review text generation, character-level transformer decoder",
        ("CausalLM",), True,
    ),
}


def builtin_dir(name):
    """The directory of the built-in preset `name` (which may not have been written yet).

    >>> os.path.basename(builtin_dir("transformer_tiny"))
    'transformer_tiny'
    """
    return os.path.join(BUILTIN_DIR, name)


def is_available(name):
    """Whether the built-in preset `name` has its files (a trained one once it is trained).

    >>> is_available("transformer_tiny"), is_available("no_such_preset")
    (True, False)
    """
    return name in BUILTIN_PRESETS and os.path.isfile(
        os.path.join(builtin_dir(name), "metadata.json")
    )


def _task_names(task):
    """The names of the registered tasks `task` (a class or a name) stands for: a task class
    and those it derives from or that derive from it (a base class stands for its tasks); a
    backbone class for every task."""
    tasks = registered_tasks()
    if isinstance(task, str) and task in tasks:
        return {task}
    if isinstance(task, type) and hasattr(task, "save_to_preset"):  # a model class
        if not hasattr(task, "backbone_cls"):  # a backbone: any task may take it
            return set(tasks)
        return {name for name, cls in tasks.items()
                if issubclass(cls, task) or issubclass(task, cls)}
    raise ValueError(
        f"`task` must be one of {list(tasks)} (a class or its name), or None; "
        f"received {task!r}."
    )


def list_presets(task=None, include_unavailable=False):
    """The built-in presets, as `{name: one-line description}`.

    Args:
        task: None for every preset, or a task (class or name: `"TextClassifier"`,
            `"CausalLM"`, `"Seq2SeqLM"`) for those it can load. Architecture presets load
            into every task that has a backbone of their kind.
        include_unavailable: also list trained presets whose files have not been written yet
            (by `tools/train_presets.py`).

    Example:
    >>> import keras_unitscale as ku
    >>> presets = ku.list_presets("TextClassifier")
    >>> "transformer_tiny" in presets and "lstm_small" in presets
    True
    >>> "lstm_small" in ku.list_presets("Seq2SeqLM")
    False
    """
    names = None if task is None else _task_names(task)
    return {
        name: description
        for name, (description, tasks, _) in BUILTIN_PRESETS.items()
        if (names is None or tasks is EVERY_TASK or names & set(tasks))
        and (include_unavailable or is_available(name))
    }


def unknown_preset_message(name):
    """The error for a name that is neither a built-in preset nor an existing directory.

    >>> print(unknown_preset_message("transformer_tyni").split(",")[0])
    Unknown preset 'transformer_tyni'; did you mean 'transformer_tiny'
    >>> "did you mean" in unknown_preset_message("resnet50")
    False
    """
    matches = difflib.get_close_matches(str(name), list(BUILTIN_PRESETS), n=3, cutoff=0.5)
    quoted = [repr(m) for m in matches]
    if len(quoted) > 1:
        quoted = [", ".join(quoted[:-1]), quoted[-1]]
    hint = f"; did you mean {' or '.join(quoted)}?" if quoted else "."
    return (
        f"Unknown preset {str(name)!r}{hint} Valid built-in presets: "
        f"{', '.join(BUILTIN_PRESETS)}. A local preset is the path of an existing directory."
    )
