"""The `keras-unitscale` command."""

import argparse
import sys


def _demo(args):
    from keras_unitscale import demo

    demo.main(epochs=args.epochs)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="keras-unitscale", description="Unit-scaled Keras models: demo and tools."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="show unit scaling on a small model and train it")
    demo.add_argument("--epochs", type=int, default=3, help="training epochs (default 3)")
    demo.set_defaults(run=_demo)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except (ValueError, FileNotFoundError) as error:
        print(f"keras-unitscale: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
