"""The commands around the models: `presets` (list them), `export` (for TF Serving), `demo`
and `scaling-law`."""

import os

from keras_unitscale.cli._common import CommandError, load_task, progress, tasks


def _presets(args):
    from keras_unitscale.presets import list_presets

    presets = list_presets(args.task)
    width = max(map(len, presets), default=0)
    for name, description in presets.items():
        print(f"{name:<{width}}  {description}")
    missing = sorted(set(list_presets(args.task, include_unavailable=True)) - set(presets))
    if missing:
        print(f"\nnot trained yet (tools/train_presets.py): {', '.join(missing)}")


def _export(args):
    from keras_unitscale.export import serving_spec

    model = load_task(args.preset)
    progress(f"exporting to {os.path.join(args.directory, str(args.version))}")
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


def add_listing(commands):
    p = commands.add_parser("presets", help="list the built-in presets",
                            description="List the built-in presets and their descriptions.")
    p.add_argument("--task", choices=sorted(tasks()),
                   help="only the presets this task can load")
    p.set_defaults(run=_presets)


def add_commands(commands):
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
