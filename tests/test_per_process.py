"""One object per process: made once per process (threads share it), a new one after fork, the parent's untouched."""

from __future__ import annotations

import os
import threading

from storage_backends.per_process import PerProcess


def test_threads_of_one_process_share_one_object():
    made = []
    holder = PerProcess(lambda: made.append(object()) or made[-1])
    seen = []
    threads = [threading.Thread(target=lambda: seen.append(holder.get())) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(made) == 1 and all(item is made[0] for item in seen)


def test_a_forked_child_makes_its_own_and_leaves_the_parents_alone():
    holder = PerProcess(lambda: {"pid": os.getpid()})
    parents = holder.get()
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        ok = holder.get()["pid"] == os.getpid() and holder.get() is not parents and parents["pid"] != os.getpid()
        os.write(write, b"1" if ok else b"0")
        os._exit(0)
    os.close(write)
    assert os.read(read, 1) == b"1"
    os.waitpid(child, 0)
    assert holder.get() is parents


def test_take_hands_over_this_process_object_once():
    holder = PerProcess(object)
    first = holder.get()
    assert holder.take() is first and holder.take() is None
    assert holder.get() is not first
