"""gs:// (gcs://): Google Cloud Storage through gcsfs (the `gcs` extra). The generic adapter, with what GCS does
better: uploads are atomic (no temp object and copy), and a manifest's compare-and-swap is a conditional upload on
the object's generation (``ifGenerationMatch``; 0 for "still absent")."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from storage_backends.generic import BucketBackend

# A read of a manifest and its generation that saw the object replaced in between is tried again this many times.
VERSIONED_READ_ATTEMPTS = 3
# gcsfs waits forever for an answer unless told (a stalled server would hold a worker thread); as S3's read timeout.
REQUEST_TIMEOUT_SECONDS = 30
_BOUNDARY = "==pkgdl-manifest=="


class GcsBackend(BucketBackend):
    """gcsfs; PKGDL_STORAGE_OPTIONS as gcsfs takes them (token, project, endpoint_url for an emulator...)."""

    protocol = "gs"
    read_again_after_reconnect = False  # gcsfs retries six times itself

    def create_filesystem(self) -> Any:
        """gcsfs's filesystem; against an emulator (``endpoint_url``) its plain JSON-API class: the default one first
        asks a gRPC endpoint about zonal buckets, which an emulator does not serve (a minute of retries)."""
        options = {"requests_timeout": REQUEST_TIMEOUT_SECONDS, **self.options}
        if "endpoint_url" not in options:
            import fsspec

            return fsspec.filesystem("gs", skip_instance_cache=True, **options)
        from gcsfs.core import GCSFileSystem

        return GCSFileSystem(skip_instance_cache=True, **options)

    def read_versioned(self, fs: Any, location: str) -> tuple[bytes, str]:
        """The object and its generation, read as one: the bytes are fetched on that generation only."""
        bucket, key, _ = fs.split_path(location)
        for _ in range(VERSIONED_READ_ATTEMPTS):
            generation = str(fs.info(location)["generation"])
            try:
                _, data = fs.call("GET", "b/{}/o/{}", bucket, key, alt="media", ifGenerationMatch=generation)
            except FileExistsError:  # gcsfs's word for 412: replaced since the info, read again
                continue
            return data, generation
        raise ConnectionError("the object kept changing while it was read")

    def replace_if(self, fs: Any, location: str, data: bytes, version: str | None) -> bool:
        """An upload that GCS performs only while the object is at that generation (0: absent); 412 -> False."""
        bucket, key, _ = fs.split_path(location)
        # A multipart upload as gcsfs makes them (fake-gcs-server checks ifGenerationMatch on these, not on media).
        head = (f"--{_BOUNDARY}\nContent-Type: application/json; charset=UTF-8\n\n{json.dumps({'name': key})}\n"
                f"--{_BOUNDARY}\nContent-Type: application/octet-stream\n\n")
        body = head.encode() + data + f"\n--{_BOUNDARY}--".encode()
        try:
            fs.call("POST", f"{fs._location}/upload/storage/v1/b/{quote(bucket)}/o", uploadType="multipart",
                    ifGenerationMatch=version or "0", data=body, json_out=True,
                    headers={"Content-Type": f'multipart/related; boundary="{_BOUNDARY}"'})
        except FileExistsError:  # gcsfs's word for 412 Precondition Failed
            return False
        fs.invalidate_cache(location)
        return True
