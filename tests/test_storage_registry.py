"""Which backend serves a URL (storage_backends/registry.py): built-ins, plug-ins by entry point, the generic
adapter for any protocol fsspec knows, and one line naming the extra when an implementation is missing."""

from __future__ import annotations

import contextlib
import importlib.metadata
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from storage_backends import open_storage, registry
from storage_backends.generic import FsspecBackend
from storage_backends.http import HttpBackend
from storage_backends.local import LocalBackend
from storage_backends.memory import MemoryBackend
from storage_backends.s3 import S3Backend


@pytest.mark.parametrize("url, backend", [
    ("file:///srv/p", LocalBackend), ("memory://x", MemoryBackend), ("s3://b/p", S3Backend),
    ("S3A://b", S3Backend), ("https://h/p", HttpBackend),
])
def test_builtins_keep_their_specialised_backends(url, backend):
    assert type(registry.backend_for(url, {})) is backend


def test_any_other_fsspec_protocol_goes_through_the_generic_adapter(tmp_path):
    """ftp (in fsspec itself): host, port and user from the URL become filesystem options, no I/O at construction."""
    backend = registry.backend_for("ftp://user@127.0.0.1:2121/pub/pkgs", {"timeout": 5})
    assert type(backend) is FsspecBackend and backend.protocol == "ftp"
    assert backend.root == "/pub/pkgs"
    assert backend.options == {"host": "127.0.0.1", "port": 2121, "username": "user", "timeout": 5}
    assert backend.unknown_errors_are_outages
    open_storage("ftp://127.0.0.1:9/x")  # builds lazily: nothing listens there


@pytest.mark.parametrize("url, extra", [("gs://bucket/p", "gcs"), ("az://container/p", "azure"),
                                        ("abfs://container/p", "azure")])
def test_a_missing_implementation_names_the_extra(url, extra, monkeypatch):
    import fsspec

    def missing(protocol):
        raise ImportError(f"Install {protocol}fs to access this")
    monkeypatch.setattr(fsspec, "get_filesystem_class", missing)
    with pytest.raises(ValueError, match=rf"pip install 'pkgdl\[{extra}\]'"):
        registry.backend_for(url, {})


def test_unknown_schemes_are_refused_at_start():
    with pytest.raises(ValueError, match="unsupported storage URL scheme 'nosuchfs'"):
        registry.backend_for("nosuchfs://x", {})


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """A tiny third-party backend, installed as a distribution whose entry point registers scheme `tinyfs`: what
    `pip install pkgdl-tinyfs` would leave in site-packages."""
    source = textwrap.dedent('''
        from storage_backends.memory import MemoryBackend

        class TinyBackend(MemoryBackend):
            """tinyfs://name: the memory store under another scheme (a real plug-in wraps its own filesystem)."""
    ''')
    with _installed(tmp_path, monkeypatch, "pkgdl_tinyfs", "tinyfs = pkgdl_tinyfs:TinyBackend", source):
        yield


@contextlib.contextmanager
def _installed(tmp_path, monkeypatch, module: str, entry: str, source: str) -> Iterator[None]:
    """Install `module` (its `source`) as a distribution whose pkgdl.storage_backends entry point is `entry`, for
    the block's duration."""
    (tmp_path / f"{module}.py").write_text(source)
    dist = tmp_path / f"{module}-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module.replace('_', '-')}\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[pkgdl.storage_backends]\n{entry}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry.plugins.cache_clear()
    try:
        yield
    finally:
        registry.plugins.cache_clear()
        sys.modules.pop(module, None)


def test_a_plugin_registers_through_its_entry_point(plugin):
    assert any(entry.name == "tinyfs" for entry in importlib.metadata.entry_points(group=registry.ENTRY_POINT_GROUP))
    storage = open_storage("tinyfs://plugin-test")
    assert type(storage._backend).__name__ == "TinyBackend"
    storage.write_bytes("a/b.bin", b"plug-in bytes")
    assert storage.read_bytes("a/b.bin") == b"plug-in bytes"
    with storage.open_blob("a/b.bin", 13) as blob:
        assert blob.read() == b"plug-in bytes"


def test_a_plugin_that_is_not_a_backend_is_refused(tmp_path, monkeypatch):
    with _installed(tmp_path, monkeypatch, "pkgdl_bad", "badfs = pkgdl_bad:Backend", "Backend = object\n"), \
            pytest.raises(ValueError, match="not a FsspecBackend subclass"):
        registry.backend_for("badfs://x", {})


def test_the_project_declares_the_extras_it_names():
    import tomllib

    declared = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    assert set(registry.EXTRAS.values()) <= set(declared)
