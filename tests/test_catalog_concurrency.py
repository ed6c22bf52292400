"""The catalog loses no data: concurrent `pkgdl catalog add` runs into one scan all land (local: flock; S3:
conditional PUTs), and readers never see half a manifest."""

from __future__ import annotations

import json
import os
import random
import subprocess
import threading

import pytest

from app.manifest import manifest_path, parse_manifest
from deploy.processes import BIN
from storage_backends import open_storage

pytestmark = pytest.mark.integration


@pytest.fixture(params=["local", "s3"])
def storage_env(request, tmp_path) -> dict[str, str]:
    """The environment of a local root (flock) or of a SeaweedFS bucket (conditional PUTs)."""
    if request.param == "local":
        root = tmp_path / "packages"
        root.mkdir()  # a missing root reads as an outage, not as "no manifest yet"
        return {"PKGDL_STORAGE_URL": root.as_uri()}
    seaweedfs = request.getfixturevalue("seaweedfs")
    return {"PKGDL_STORAGE_URL": seaweedfs.url(f"concurrency-{tmp_path.name}"),
            "PKGDL_STORAGE_OPTIONS": json.dumps(seaweedfs.options)}


def test_concurrent_imports_into_one_scan_all_land(tmp_path, storage_env):
    env = {**os.environ, **storage_env, "PKGDL_SECRET_KEYS": "k"}
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
    storage = open_storage(storage_env["PKGDL_STORAGE_URL"], json.loads(storage_env.get("PKGDL_STORAGE_OPTIONS", "{}")))
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
