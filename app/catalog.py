"""The catalog: scan manifests read from storage and cached per worker for PKGDL_CATALOG_TTL seconds."""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict

from app.manifest import Manifest, Package, ScanEntries, manifest_path, parse_manifest, scan_entries
from storage_backends import Storage

log = logging.getLogger("pkgdl.catalog")


class Catalog:
    """Finds packages through scan manifests; never lists the storage."""

    def __init__(self, storage: Storage, ttl: float, max_entries: int = 1024) -> None:
        self.storage = storage
        self.ttl = ttl
        self.max_entries = max_entries
        # (kind, uid, siid, sid) -> (expiry, a Manifest for "all" or ScanEntries for "one")
        self._cache: OrderedDict[tuple[str, str, int, int], tuple[float, Manifest | ScanEntries]] = OrderedDict()
        self._lock = threading.Lock()

    def manifest(self, uid: str, siid: int, sid: int) -> Manifest:
        """The scan's manifest; FileNotFoundError when the scan does not exist, ManifestError when it is broken."""
        cached = self._fresh(("all", uid, siid, sid))
        if cached is not None:
            return cached
        manifest = parse_manifest(self.storage.read_bytes(manifest_path(uid, siid, sid)), uid=uid, siid=siid, sid=sid)
        for entry in manifest.unusable:  # once per worker and PKGDL_CATALOG_TTL; they are left out of the listing
            log.warning("scan %s/%s/%s: unusable manifest entry %s", uid, siid, sid, entry.describe())
        self._keep(("all", uid, siid, sid), manifest)
        return manifest

    def package(self, uid: str, siid: int, sid: int, pid: int) -> Package:
        """One package of a scan; FileNotFoundError when the scan or the package does not exist, ManifestError when
        its entry is unusable. A download validates only its own entry (ScanEntries) unless the whole manifest is
        at hand already (a listing of this scan on this worker)."""
        scan = self._fresh(("all", uid, siid, sid)) or self._fresh(("one", uid, siid, sid))
        if scan is None:
            scan = scan_entries(self.storage.read_bytes(manifest_path(uid, siid, sid)), uid=uid, siid=siid, sid=sid)
            self._keep(("one", uid, siid, sid), scan)
        package = scan.package(pid)
        if package is None:
            raise FileNotFoundError("no such package")
        return package

    def _fresh(self, key: tuple[str, str, int, int]) -> Manifest | ScanEntries | None:
        cached = self._cache.get(key)
        return cached[1] if cached is not None and cached[0] > time.monotonic() else None

    def _keep(self, key: tuple[str, str, int, int], value: Manifest | ScanEntries) -> None:
        if self.ttl > 0:
            with self._lock:
                self._cache[key] = (time.monotonic() + self.ttl, value)
                self._cache.move_to_end(key)
                while len(self._cache) > self.max_entries:
                    self._cache.popitem(last=False)
