"""The catalog: scan manifests read from storage and cached per worker for PKGDL_CATALOG_TTL seconds."""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict

from app.manifest import Manifest, Package, manifest_path, parse_manifest
from storage_backends import Storage

log = logging.getLogger("pkgdl.catalog")


class Catalog:
    """Finds packages through scan manifests; never lists the storage."""

    def __init__(self, storage: Storage, ttl: float, max_entries: int = 1024) -> None:
        self.storage = storage
        self.ttl = ttl
        self.max_entries = max_entries
        self._cache: OrderedDict[tuple[str, int, int], tuple[float, Manifest]] = OrderedDict()
        self._lock = threading.Lock()

    def manifest(self, uid: str, siid: int, sid: int) -> Manifest:
        """The scan's manifest; FileNotFoundError when the scan does not exist, ManifestError when it is broken."""
        key = (uid, siid, sid)
        cached = self._cache.get(key)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        manifest = parse_manifest(self.storage.read_bytes(manifest_path(uid, siid, sid)), uid=uid, siid=siid, sid=sid)
        for entry in manifest.unusable:  # once per worker and PKGDL_CATALOG_TTL; they are left out of the listing
            log.warning("scan %s/%s/%s: unusable manifest entry %s", uid, siid, sid, entry.describe())
        if self.ttl > 0:
            with self._lock:
                self._cache[key] = (time.monotonic() + self.ttl, manifest)
                self._cache.move_to_end(key)
                while len(self._cache) > self.max_entries:
                    self._cache.popitem(last=False)
        return manifest

    def package(self, uid: str, siid: int, sid: int, pid: int) -> Package:
        """One package of a scan; FileNotFoundError when the scan or the package does not exist, ManifestError when
        its entry is unusable."""
        package = self.manifest(uid, siid, sid).package(pid)
        if package is None:
            raise FileNotFoundError("no such package")
        return package
