"""The packages import one another in one direction (issue 14): no cycle between the packages
of `keras_unitscale`, counting imports inside functions, and presets, export and the CLI name
no task class (they read what the classes declare). Read from the source with `ast`, so the
module runs in one pass and takes well under a second."""

import ast
import functools
import os

import pytest

import keras_unitscale
from keras_unitscale._tasks import registered_tasks

pytestmark = pytest.mark.backend_independent

ROOT = os.path.dirname(keras_unitscale.__file__)


def _modules(units=None):
    """`(path under the package, ast)` of its files, or of those in `units` only."""
    for folder, _, files in os.walk(ROOT):
        for name in sorted(files):
            path = os.path.relpath(os.path.join(folder, name), ROOT)
            if name.endswith(".py") and (units is None or path.split(os.sep)[0] in units):
                yield path, _parse(path)


@functools.lru_cache(maxsize=None)
def _parse(path):
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        text = f.read()
    # A file that never names the package imports none of it (the Unicode tables, say).
    return ast.parse(text if "keras_unitscale" in text else "")


def _unit(name):
    """The package (or top-level module) a dotted module name belongs to, e.g. `models`."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "keras_unitscale" else None


def _imports(tree):
    """Every `keras_unitscale` module a file imports, anywhere in it (functions included)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name.startswith("keras_unitscale.")}


def _graph():
    """`{unit: units it imports}` over the packages and top-level modules; the root
    `__init__.py` (which re-exports them all) is left out."""
    graph = {}
    for path, tree in _modules():
        if path == "__init__.py":
            continue
        unit = path.split(os.sep)[0].removesuffix(".py")
        targets = {_unit(name) for name in _imports(tree)} - {None, unit}
        # `from keras_unitscale import x` names a unit only when x is one.
        targets = {t for t in targets if os.path.exists(os.path.join(ROOT, t)) or
                   os.path.exists(os.path.join(ROOT, t + ".py"))}
        graph.setdefault(unit, set()).update(targets)
    return graph


def _cycle(graph):
    state, stack = {}, []

    def visit(unit):
        state[unit] = "open"
        stack.append(unit)
        for other in sorted(graph.get(unit, ())):
            if state.get(other) == "open":
                return stack[stack.index(other):] + [other]
            if other not in state:
                found = visit(other)
                if found:
                    return found
        state[unit] = "done"
        stack.pop()
        return None

    for unit in sorted(graph):
        if unit not in state:
            found = visit(unit)
            if found:
                return found
    return None


def test_no_import_cycle_between_the_packages():
    graph = _graph()
    assert {"models", "presets", "export", "cli", "layers", "ops"} <= set(graph)
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))
    # The direction KerasHub's tasks have: a task reaches presets and export, never the reverse.
    assert "models" not in graph["presets"] | graph["export"]
    assert "cli" not in set().union(*(v for k, v in graph.items() if k != "cli"))


def test_presets_export_and_the_cli_name_no_task_class():
    names = set(registered_tasks())
    assert names == {"TextClassifier", "CausalLM", "Seq2SeqLM"}
    named = []
    for path, tree in _modules(("presets", "export", "cli")):
        for node in ast.walk(tree):
            name = node.id if isinstance(node, ast.Name) else (
                node.attr if isinstance(node, ast.Attribute) else None)
            if name in names:
                named.append(f"{path}:{node.lineno} {name}")
    assert not named, named


def test_the_tasks_declare_what_presets_export_and_the_cli_read():
    for name, cls in registered_tasks().items():
        # Named, not imported: the preprocessors load keras-hub on first use.
        assert vars(cls)["preprocessor_cls"].name == f"{name}Preprocessor"
        assert cls.backbone_cls and all(isinstance(b, type) for b in cls.backbone_cls)
        assert set(cls.data_columns) == set(cls.text_inputs), name
        assert cls.command in ("predict", "generate", "translate"), name
    commands = [cls.command for cls in registered_tasks().values()]
    assert len(set(commands)) == len(commands)
