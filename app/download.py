"""A package download as a short template: validators, preconditions, open, first chunk, claim, stream."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Mapping
from typing import BinaryIO

from flask import Response

from app.byteranges import multipart_layout, new_boundary
from app.conditional import ByteRange, Representation, evaluate, unsatisfiable_content_range
from app.delivery import BodyPlan, DeliveryPolicy
from app.errors import RangeNotSatisfiable
from app.headers import content_disposition, http_date, repr_digest
from app.ids import is_media_type
from app.manifest import Package
from app.offload import is_conditional, offload_target, offloaded_response
from storage_backends import Storage

CHUNK_SIZE = 1 << 20  # 1 MiB reads from remote storage: bounded memory per stream; 4 MiB was no faster on S3.
# Local files are read up to 4 MiB at a time for clients that keep up: streaming 256 MiB to one client over loopback,
# 1 MiB reads reached 0.85-0.91 of nginx static and 4 MiB reads 0.95-1.03 (interleaved runs, several passes). Slow
# clients keep 1 MiB reads: with 4 MiB, 16 threads held by slow readers grew a worker by 65-84 MiB instead of 21.
LOCAL_CHUNK_SIZE = 4 << 20
# A client is fast once it drained this much at this average rate, and its last chunk as fast. (The generator resumes
# once the server wrote the previous chunk; the first megabytes only fill socket buffers, hence the amount.)
FAST_CLIENT_AFTER = 16 << 20
FAST_CLIENT_BYTES_PER_SECOND = 64 << 20
DEFAULT_TYPE = "application/octet-stream"
SENDFILE_MAX = 8 << 20


def representation_of(package: Package) -> Representation:
    """The validators come from the catalog, so 304s never touch the storage."""
    return Representation(etag=f'"{package.sha256}"', last_modified=package.last_modified, size=package.size)


def package_response(storage: Storage, package: Package, method: str, request_headers: Mapping[str, str],
                     policy: DeliveryPolicy, file_wrapper: Callable | None = None) -> Response:
    """Answer GET/HEAD (POST from the landing page counts as GET) for one package."""
    decision = evaluate("HEAD" if method == "HEAD" else "GET", request_headers, representation_of(package))
    headers = _validator_headers(package, policy)
    if decision.status in (304, 412):
        return empty_response(decision.status, headers)
    if decision.status == 416:
        raise RangeNotSatisfiable(unsatisfiable_content_range(package.size))
    headers.update(_content_headers(package))
    blob = storage.open_blob(package.path, package.size)  # also proves the blob is there before any burn
    is_local = storage.local_path(package.path) is not None
    if policy.offload and method != "HEAD" and not decision.ranges and not is_conditional(request_headers):
        target = offload_target(storage, package, is_local)
        if target is not None:
            blob.close()
            return offloaded_response(target, package, headers, policy)
    if method == "HEAD":
        blob.close()
        headers["Content-Length"] = str(package.size)
        return Response(status=200, headers=headers)
    if file_wrapper is not None and not decision.ranges and is_local and package.size <= SENDFILE_MAX:
        return _sendfile(blob, package, headers, policy, file_wrapper)
    return _streamed(blob, package, decision.ranges, headers, policy, LOCAL_CHUNK_SIZE if is_local else CHUNK_SIZE)


def _streamed(blob: BinaryIO, package: Package, ranges: tuple[ByteRange, ...], headers: dict[str, str],
              policy: DeliveryPolicy, chunk_size: int = CHUNK_SIZE) -> Response:
    """Read the first chunk (faults still get a clean status), claim, then stream the rest in bounded chunks."""
    try:
        body, plan, content_type = _body_plan(blob, package, ranges, chunk_size)
        first = next(body)  # storage faults before the first byte still become clean 4xx/5xx answers
        policy.observer.before_first_byte(plan, in_hand=len(first) == plan.length)
        policy.observer.sending(len(first))  # a refusal here is still a clean answer, not a broken stream
    except BaseException:
        blob.close()
        raise
    length = plan.length
    headers["Content-Length"] = str(length)
    headers["Content-Type"] = content_type
    if len(ranges) == 1:
        headers["Content-Range"] = ranges[0].content_range(package.size)
    status = 206 if ranges else 200
    stream = _observed(first, body, blob, length, policy.observer.sending,
                       lambda sent, done: policy.observer.finished(status, sent, "completed" if done else "aborted"))
    return Response(stream, status=status, headers=headers, direct_passthrough=True)


def _sendfile(blob: BinaryIO, package: Package, headers: dict[str, str], policy: DeliveryPolicy,
              file_wrapper: Callable) -> Response:
    """A whole small local file through the server's sendfile(2) (gunicorn: wsgi.file_wrapper)."""
    try:
        policy.observer.before_first_byte(BodyPlan.whole(package.size))
    except BaseException:
        blob.close()
        raise
    headers["Content-Length"] = str(package.size)
    headers["Content-Type"] = _media_type(package.mime_type)
    handed = _HandedFile(blob, lambda: policy.observer.finished(200, package.size, "sendfile"))
    # direct_passthrough: werkzeug gives the server our wrapper as is, so gunicorn can sendfile(2) it.
    return Response(file_wrapper(handed, CHUNK_SIZE), status=200, headers=headers, direct_passthrough=True)


class _HandedFile:
    """The blob as given to the server's file wrapper: the server closes it when done, which ends the audit."""

    def __init__(self, blob: BinaryIO, on_close: Callable[[], None]) -> None:
        self._blob, self._on_close = blob, on_close

    def read(self, size: int = -1) -> bytes:
        return self._blob.read(size)

    def fileno(self) -> int:
        return self._blob.fileno()

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._blob.seek(offset, whence)

    def tell(self) -> int:
        return self._blob.tell()

    def close(self) -> None:
        if not self._blob.closed:
            self._blob.close()
            self._on_close()


class _BodilessResponse(Response):
    """304 and 412 carry no body, so no Content-Type either (Flask's default would add text/html)."""

    default_mimetype = None


def empty_response(status: int, headers: Mapping[str, str]) -> Response:
    """A 304 or 412 with the given headers and nothing else."""
    return _BodilessResponse(status=status, headers=headers)


def _validator_headers(package: Package, policy: DeliveryPolicy) -> dict[str, str]:
    headers = {"ETag": f'"{package.sha256}"', "X-Content-Type-Options": "nosniff", **policy.cache_headers}
    if package.last_modified is not None:
        headers["Last-Modified"] = http_date(package.last_modified)
    return headers


def _content_headers(package: Package) -> dict[str, str]:
    return {
        "Accept-Ranges": "bytes",
        "Content-Disposition": content_disposition(package.full_name),
        "Repr-Digest": repr_digest(package.sha256),
        "Content-Type": _media_type(package.mime_type),
    }




def _media_type(mime_type: str | None) -> str:
    """The manifest's type when it is a plain type/subtype; never xml, html or script (a package is bytes)."""
    if not mime_type or not is_media_type(mime_type) or re.search(r"xml|html|script", mime_type, re.I):
        return DEFAULT_TYPE
    return mime_type


def _body_plan(blob: BinaryIO, package: Package, ranges: tuple[ByteRange, ...],
               chunk_size: int) -> tuple[Iterator[bytes], BodyPlan, str]:
    """The body's chunks, its plan (exact length, where the package's bytes sit) and its Content-Type."""
    if not ranges:
        whole = BodyPlan.whole(package.size)
        return _read_span(blob, 0, package.size, chunk_size), whole, _media_type(package.mime_type)
    if len(ranges) == 1:
        only = ranges[0]
        plan = BodyPlan(only.length, ranged=True, spans=((0, only.start, only.length),))
        return _read_span(blob, only.start, only.length, chunk_size), plan, _media_type(package.mime_type)
    layout = multipart_layout(ranges, package.size, _media_type(package.mime_type), new_boundary())
    spans, offset = [], 0
    for preamble, part in layout.parts:
        offset += len(preamble)
        spans.append((offset, part.start, part.length))
        offset += part.length
    plan = BodyPlan(layout.content_length, ranged=True, spans=tuple(spans))

    def parts() -> Iterator[bytes]:
        # Each preamble travels with its part's first chunk, so the first yield has read the storage: a fault there
        # is still answered with a clean status.
        for preamble, part in layout.parts:
            chunks = _read_span(blob, part.start, part.length, chunk_size)
            yield preamble + next(chunks)
            yield from chunks
        yield layout.closing

    return parts(), plan, layout.content_type


def _read_span(blob: BinaryIO, start: int, length: int, chunk_size: int) -> Iterator[bytes]:
    """Read ``length`` bytes from ``start`` in bounded chunks; a short object is an error, never a short file.

    Reads are CHUNK_SIZE, or up to ``chunk_size`` while the client is fast (see FAST_CLIENT_AFTER).
    """
    blob.seek(start)
    remaining = length
    if remaining == 0:
        yield b""
    small = size = min(CHUNK_SIZE, chunk_size)
    drained, started = 0, time.monotonic()
    while remaining > 0:
        chunk = blob.read(min(size, remaining))
        if not chunk:
            raise OSError("storage object ended before its catalogued size")
        remaining -= len(chunk)
        handed = time.monotonic()
        yield chunk
        now = time.monotonic()
        drained += len(chunk)
        fast = (drained >= FAST_CLIENT_AFTER and (now - started) * FAST_CLIENT_BYTES_PER_SECOND <= drained
                and (now - handed) * FAST_CLIENT_BYTES_PER_SECOND <= len(chunk))
        size = chunk_size if fast else small


def _observed(first: bytes, rest: Iterator[bytes], blob: BinaryIO, length: int, sending: Callable[[int], None],
              finish: Callable[[int, bool], None]) -> Iterator[bytes]:
    """Yield the body (`first` already announced), announcing each further chunk before it is handed over (`sending`
    may refuse it); on a fault mid-stream re-raise so the server aborts the connection (no complete-looking file)."""
    sent = 0
    try:
        yield first
        sent += len(first)
        for chunk in rest:
            sending(len(chunk))
            yield chunk
            sent += len(chunk)
    finally:
        blob.close()
        finish(sent, sent == length)
