"""Folders written whole: every file fsynced, then renamed into place, so a crash never leaves a half-written folder
under its final name (checkpoints' step folders, a run's ``final`` policy, an export)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path


def fsync_tree(folder: Path) -> None:
    """fsync every file in ``folder`` and the folder itself."""
    for path in folder.iterdir():
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())
    fsync_dir(folder)


def fsync_dir(folder: Path) -> None:
    """fsync ``folder`` itself (its entries: a rename into it survives a power cut)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def swap_in(tmp: Path, final: Path, old: Path) -> None:
    """Give the fully written folder ``tmp`` the name ``final``. An existing ``final`` is renamed to ``old`` first and
    removed after, so a kill at any point leaves one complete copy, as ``final`` or as ``old`` (`recover_swap`)."""
    if final.exists():
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old)
    else:
        os.replace(tmp, final)
    fsync_dir(final.parent)


def recover_swap(final: Path, old: Path) -> None:
    """Undo what a `swap_in` killed midway left: ``old`` back as ``final`` when ``final`` is missing (killed between
    the two renames), else ``old`` removed (the new copy was in place)."""
    if not old.is_dir():
        return
    if final.exists():
        shutil.rmtree(old)
    else:
        os.replace(old, final)


def _make_temporary(folder: Path, tmp: Path, old: Path) -> None:
    """Create ``folder``'s parents and the empty ``tmp`` beside it (after recovering an interrupted swap).

    Raises:
        PermissionError: no folder can be made there (a read-only or special file system such as /proc, a parent
            the user may not write); the message names ``folder``, the path asked for, not ``tmp``.
    """
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        recover_swap(folder, old)  # a previous write killed midway
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    except OSError as error:
        raise PermissionError(f"cannot write {folder}: cannot create a folder in {folder.parent} "
                              f"({error.strerror or error})") from error


def replace_folder(folder: Path, write: Callable[[Path], object]) -> Path:
    """Write ``folder`` as a whole: ``write(tmp)`` fills a fresh sibling ``.NAME.tmp``, its files are fsynced, and
    only then does it take the name (an existing folder is renamed to ``.NAME.old`` first, then removed). A crash or
    an error leaves the previous folder or none, never a half-written one; the next write clears what is left.

    Raises:
        NotADirectoryError: ``folder`` is a file.
        PermissionError: no folder can be made where ``folder`` goes (its message names ``folder``).
    """
    tmp, old = folder.with_name(f".{folder.name}.tmp"), folder.with_name(f".{folder.name}.old")
    if folder.exists() and not folder.is_dir():  # a file there would be renamed away and lost, not replaced
        raise NotADirectoryError(f"{folder} is a file, not a folder: not replacing it; give a new or empty folder")
    _make_temporary(folder, tmp, old)
    try:
        write(tmp)
        fsync_tree(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    swap_in(tmp, folder, old)
    return folder
