"""Loading the repository's scripts (`benchmarks/`, `tools/`) as modules in tests."""

import importlib.util
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_script(relative_path, name):
    """The script at `relative_path` (from the repository root), executed as module `name`."""
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, relative_path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
