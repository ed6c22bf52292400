"""The catalog loses no data: concurrent `pkgdl catalog add` runs into one scan all land; readers never see half."""

from __future__ import annotations

import os
import random
import subprocess
import threading

import pytest

from app.manifest import manifest_path, parse_manifest
from storage_backends import open_storage
from tests.fixtures_service import BIN

pytestmark = pytest.mark.integration


def test_concurrent_imports_into_one_scan_all_land(tmp_path):
    root = tmp_path / "packages"
    root.mkdir()  # a missing root reads as an outage, not as "no manifest yet"
    env = {**os.environ, "PKGDL_STORAGE_URL": root.as_uri(), "PKGDL_SECRET_KEYS": "k"}
    batches = []
    for batch in range(4):
        files = []
        for n in range(5):
            path = tmp_path / f"src{batch}" / f"pkg{batch}x{n}-1.0-1.el9.x86_64.rpm"
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(random.Random(f"{batch}/{n}").randbytes(4096))
            files.append(str(path))
        batches.append(files)
    runs = [subprocess.Popen([str(BIN / "pkgdl"), "catalog", "add", "--uid", "alice", "--siid", "1", "--sid", "1",
                              *files], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for files in batches]
    storage = open_storage(root.as_uri())
    torn: list[Exception] = []
    stop = threading.Event()

    def read_while_writing() -> None:
        while not stop.is_set():
            try:
                parse_manifest(storage.read_bytes(manifest_path("alice", 1, 1)))
            except FileNotFoundError:
                pass  # not written yet
            except Exception as exc:  # noqa: BLE001 - any torn read is the failure we look for
                torn.append(exc)

    reader = threading.Thread(target=read_while_writing)
    reader.start()
    outputs = [run.communicate(timeout=60) for run in runs]
    stop.set()
    reader.join()
    assert all(run.returncode == 0 for run in runs), outputs
    manifest = parse_manifest(storage.read_bytes(manifest_path("alice", 1, 1)))
    assert len(manifest.packages) == 20
    assert sorted(p.db_id for p in manifest.packages) == list(range(1, 21))
    printed = {line.split("\t")[1] for out, _ in outputs for line in out.splitlines()}
    assert printed == {p.full_name for p in manifest.packages}
    assert not torn
