"""Atomic directory writes: a preset or an export appears whole, or not at all.

Every writer of a saved directory (`save_preset`, `export_task`) writes into a staging
directory and calls `replace_directory` to swap the result into place. A failure at any point,
in a writer or in the swap, leaves the previous directory as it was (byte for byte) and no
staging or backup directory behind.

Example:
>>> import os, tempfile
>>> target = os.path.join(tempfile.mkdtemp(), "out")
>>> with staged_directory(target) as staging:
...     with open(os.path.join(staging, "a.txt"), "w") as f:
...         _ = f.write("new")
>>> os.listdir(target)
['a.txt']
"""

import contextlib
import os
import secrets
import shutil

# The hidden names of staging and backup directories (only a crash of the process can leave
# one behind; it is then safe to delete).
TEMP_PREFIX = ".keras_unitscale-"


def _rename(source, destination):
    """`os.rename`, one step of a swap (a function of its own so tests can make it fail)."""
    os.rename(source, destination)


def _remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.remove(path)


def _make_temp_dir(parent, kind):
    """A new empty directory `parent/.keras_unitscale-<kind>-<random>`; unlike
    `tempfile.mkdtemp` (mode 0700) it gets the umask's mode, as a plain `mkdir` would, so
    the directory renamed into place is readable as the user expects (e.g. by TF Serving)."""
    for _ in range(100):
        path = os.path.join(parent, f"{TEMP_PREFIX}{kind}-{secrets.token_hex(4)}")
        try:
            os.mkdir(path)
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"Could not create a temporary directory in {parent}.")


def _create_parents(directory):
    """Creates `directory` and its missing ancestors; returns those created, deepest first."""
    created = []
    path = os.path.abspath(directory)
    while not os.path.isdir(path):
        created.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    os.makedirs(directory, exist_ok=True)
    return created


def _remove_created(created):
    for path in created:  # deepest first; only if still empty
        try:
            os.rmdir(path)
        except OSError:
            break


@contextlib.contextmanager
def staged_directory(target, entries=None):
    """Yields an empty staging directory whose contents replace `target` when the block ends.

    Args:
        target: the directory to write. Missing: the staging directory (a hidden sibling)
            is renamed to it, its missing parents created. Existing: see `entries`.
        entries: None replaces the whole `target` directory (the staging directory is a
            hidden sibling of it, renamed into place). A collection of names replaces only
            those entries of an existing `target`: the staging directory is made inside
            `target` (so it is on the same file system, even for a mount point), its contents
            are moved in and the old entries of those names moved out; other entries stay.

    If the block raises, or any step of the swap fails, the staging directory is removed,
    `target` is left as it was and the error propagates.
    """
    target = os.path.abspath(os.fspath(target))
    parent = os.path.dirname(target)
    in_place = entries is not None and os.path.isdir(target)
    created = [] if in_place else _create_parents(parent)
    staging = None
    try:
        staging = _make_temp_dir(target if in_place else parent, "staging")
        yield staging
        if in_place:
            _swap_entries(staging, target, set(entries))
        else:
            _swap_directory(staging, target)
    except BaseException:
        if staging is not None and os.path.lexists(staging):
            shutil.rmtree(staging, ignore_errors=True)
        _remove_created(created)
        raise
    if os.path.lexists(staging):
        shutil.rmtree(staging, ignore_errors=True)


def _swap_directory(staging, target):
    if not os.path.lexists(target):
        _rename(staging, target)
        return
    shutil.copymode(target, staging)
    backup = _make_temp_dir(os.path.dirname(target), "backup")
    os.rmdir(backup)  # only the name: `target` is renamed to it
    _rename(target, backup)
    try:
        _rename(staging, target)
    except BaseException:
        _restore([(backup, target)], backup)
        raise
    shutil.rmtree(backup, ignore_errors=True)


def _swap_entries(staging, target, entries):
    new = sorted(os.listdir(staging))
    unexpected = sorted(set(new) - entries)
    if unexpected:  # a writer's bug: these would not be replaced on the next save
        raise RuntimeError(f"Staged entries {unexpected} are not among {sorted(entries)}.")
    old = sorted(name for name in os.listdir(target) if name in entries)
    backup = _make_temp_dir(target, "backup")
    moves = []  # (where it is now, where it was) for each rename done
    try:
        for name in old:
            _rename(os.path.join(target, name), os.path.join(backup, name))
            moves.append((os.path.join(backup, name), os.path.join(target, name)))
        for name in new:
            _rename(os.path.join(staging, name), os.path.join(target, name))
            moves.append((os.path.join(target, name), os.path.join(staging, name)))
    except BaseException:
        _restore(moves[::-1], backup)
        raise
    shutil.rmtree(backup, ignore_errors=True)


def _restore(moves, backup):
    """Undoes renames, newest first; if that fails too, says where the old files are."""
    try:
        for now, was in moves:
            _rename(now, was)
    except OSError as error:
        raise OSError(
            f"Saving failed and restoring the previous files failed too ({error}); they are "
            f"in {backup}."
        ) from error
    if os.path.isdir(backup) and not os.listdir(backup):
        os.rmdir(backup)
