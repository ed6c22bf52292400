"""One resource per process, made on first use in each: the one way pkgdl keeps clients, pools, filesystems and
connections across gunicorn's fork (async filesystems, sockets and SQLite connections must not be shared with the
parent)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")

# What a process inherited over fork and replaced: kept referenced, never closed or collected here, since closing
# a parent's SQLite connection or socket in the child could disturb the parent's use of it.
_INHERITED: list[object] = []


class PerProcess(Generic[T]):
    """``get()`` returns this process's object, made by ``factory`` on first use (thread-safe: one per process)."""

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._lock = threading.Lock()
        self._owned: tuple[int, T] | None = None  # (pid, object) in one attribute: never a fresh pid with an old object

    def get(self) -> T:
        """This process's object."""
        owned = self._owned
        if owned is not None and owned[0] == os.getpid():
            return owned[1]
        with self._lock:
            owned = self._owned
            if owned is None or owned[0] != os.getpid():
                if owned is not None:
                    _INHERITED.append(owned[1])
                owned = (os.getpid(), self._factory())
                self._owned = owned
            return owned[1]

    def take(self) -> T | None:
        """Forget this process's object and return it (to close it); None when it has none."""
        with self._lock:
            owned, self._owned = self._owned, None
        if owned is None:
            return None
        if owned[0] != os.getpid():
            _INHERITED.append(owned[1])
            return None
        return owned[1]
