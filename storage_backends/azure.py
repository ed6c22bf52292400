"""az:// (abfs://, abfss://): Azure Blob Storage through adlfs (the `azure` extra). The generic adapter, with what
Azure does better: an upload is atomic (no temp blob and copy), and a manifest's compare-and-swap is a conditional
upload on the blob's ETag (If-Match, or If-None-Match: * for a new one)."""

from __future__ import annotations

from typing import Any

from fsspec.asyn import sync

from storage_backends.generic import BucketBackend

CONNECT_TIMEOUT_SECONDS = 5
READ_TIMEOUT_SECONDS = 30


class AzureBackend(BucketBackend):
    """adlfs; PKGDL_STORAGE_OPTIONS as adlfs takes them (account_name with account_key, sas_token or credential;
    or connection_string)."""

    protocol = "az"
    bucket_word = "container"
    read_again_after_reconnect = False  # the SDK's retry policy (create_filesystem) retries already

    def create_filesystem(self) -> Any:
        """adlfs's filesystem, its blob client rebuilt with short timeouts and retries: the SDK's defaults (waits
        of 15 s and more between three retries, no connect timeout) hold a request for minutes during an outage."""
        from azure.storage.blob.aio import BlobServiceClient, ExponentialRetry

        fs = super().create_filesystem()
        client = fs.service_client
        fs.service_client = BlobServiceClient(
            account_url=client.url, credential=client.credential, connection_timeout=CONNECT_TIMEOUT_SECONDS,
            read_timeout=READ_TIMEOUT_SECONDS,
            retry_policy=ExponentialRetry(initial_backoff=1, increment_base=2, retry_total=2, random_jitter_range=1))
        return fs

    def presigned_url(self, fs: Any, location: str, expires: int) -> str | None:
        """A read-only SAS URL of the blob (signed locally with the account key; None without one), for nginx
        (X-Accel offload through the same internal location as S3: PKGDL_S3_ENDPOINT is then the blob endpoint)."""
        try:
            return fs.sign(location, expiration=expires)
        except (ValueError, TypeError, AttributeError):  # no account key to sign with (a token credential)
            return None

    def read_versioned(self, fs: Any, location: str) -> tuple[bytes, str]:
        """The blob and its ETag, from one download."""
        container, blob, _ = fs.split_path(location)

        async def download() -> tuple[bytes, str]:
            async with fs.service_client.get_blob_client(container, blob) as client:
                stream = await client.download_blob()
                return await stream.readall(), stream.properties.etag

        return sync(fs.loop, download)

    def replace_if(self, fs: Any, location: str, data: bytes, version: str | None) -> bool:
        """An upload Azure performs only while the blob has that ETag (None: while it is absent); 412/409 -> False."""
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceExistsError, ResourceModifiedError

        container, blob, _ = fs.split_path(location)
        condition = ({"etag": version, "match_condition": MatchConditions.IfNotModified} if version is not None
                     else {"match_condition": MatchConditions.IfMissing})

        async def upload() -> None:
            async with fs.service_client.get_blob_client(container, blob) as client:
                await client.upload_blob(data, overwrite=True, **condition)

        try:
            sync(fs.loop, upload)
        except (ResourceModifiedError, ResourceExistsError):
            return False
        fs.invalidate_cache(location)
        return True
