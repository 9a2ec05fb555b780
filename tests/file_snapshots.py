"""What the atomic-save tests share: the failure they inject and a byte-for-byte listing."""

import hashlib
import os


class Injected(Exception):
    """The failure the tests inject."""


def snapshot(root):
    """`{relative path: sha256 of a file, or "dir"}` of everything under `root`."""
    found = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs:
            found[os.path.relpath(os.path.join(directory, name), root)] = "dir"
        for name in files:
            with open(os.path.join(directory, name), "rb") as f:
                found[os.path.relpath(os.path.join(directory, name), root)] = (
                    hashlib.sha256(f.read()).hexdigest())
    return found
