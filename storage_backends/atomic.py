"""Replace a local file atomically and durably: the one way pkgdl writes files (storage objects, the users file)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from typing import BinaryIO


def atomic_write(target: str | os.PathLike[str], fill: Callable[[BinaryIO], object], mode: int = 0o644) -> None:
    """Write through ``fill`` into a temp file beside ``target``, then rename it over: readers see the old or the
    new file, never a part. mkstemp gives an unpredictable name created O_EXCL (nothing planted there is followed);
    the file and then the directory are fsynced, so the new content and the rename survive a crash."""
    target = os.fspath(target)
    directory = os.path.dirname(target) or "."
    os.makedirs(directory, exist_ok=True)
    fd, temp_path = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(target)}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            fill(out)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temp_path, mode)  # mkstemp makes 0600
        os.replace(temp_path, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_path)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
