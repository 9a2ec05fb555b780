"""Every docstring example in the package runs, on each backend."""

import doctest
import importlib
import pkgutil

import pytest

import keras_unitscale

MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(keras_unitscale.__path__, prefix="keras_unitscale.")
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    result = doctest.testmod(module, optionflags=flags, verbose=False)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"


def test_public_classes_have_examples():
    import inspect

    missing = []
    for package in ("layers", "models", "losses"):
        module = importlib.import_module(f"keras_unitscale.{package}")
        for attr in dir(module):
            obj = getattr(module, attr)
            if inspect.isclass(obj) and obj.__module__.startswith("keras_unitscale"):
                if ">>>" not in (obj.__doc__ or ""):
                    missing.append(f"{package}.{attr}")
    assert not missing, f"public classes without a runnable example: {missing}"
