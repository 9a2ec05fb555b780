"""The `keras-unitscale` command: presets, predict, translate, generate, train, evaluate,
export, demo and scaling-law.

One module per group of commands (`inference`: predict, translate, generate; `training`:
train, evaluate; `delivery`: presets, export, demo, scaling-law); what they share is in
`_common`. None names a task class: they read what the tasks declare (see
`keras_unitscale.models.Task`). Imports of Keras' backends and the heavy libraries happen
inside each command, so `--help` stays quick. Errors a user can fix come out as one line,
`keras-unitscale: error: ...`, with exit status 1 (argparse's usage errors exit with 2). Steps
that take seconds (loading a preset, the first generation, an export) print a progress line to
stderr. TensorFlow's, XLA's and absl's log lines and TensorFlow's and JAX's Python warnings are
silenced unless `--verbose` (`keras_unitscale._quiet`). Run it as `keras-unitscale` or
`python -m keras_unitscale.cli`.

Example:
>>> from keras_unitscale.cli import main
>>> main(["presets", "--task", "Seq2SeqLM"])  # doctest: +ELLIPSIS
transformer_tiny ...
0
"""

import argparse
import sys

from keras_unitscale import _quiet
from keras_unitscale.cli import delivery, inference, training
from keras_unitscale.cli._common import CommandError

__all__ = ["CommandError", "build_parser", "main"]


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
    delivery.add_listing(commands)
    inference.add_commands(commands)
    training.add_commands(commands)
    delivery.add_commands(commands)
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
