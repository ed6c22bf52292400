"""Streamed reads: 1 MiB to start, up to the larger local size while the client drains them fast."""

from __future__ import annotations

import io

import pytest

import app.download as download

MiB = 1 << 20


class _RecordingBlob(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.reads: list[int] = []

    def read(self, size: int | None = -1) -> bytes:
        self.reads.append(size)
        return super().read(size)


class _Clock:
    now = 0.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> _Clock:
    fake = _Clock()
    monkeypatch.setattr(download, "time", fake)
    return fake


def _consume(blob: _RecordingBlob, clock: _Clock, seconds_per_chunk: list[float]) -> bytes:
    """Iterate like a server: each chunk 'takes' the given time to reach the client."""
    received = []
    for index, chunk in enumerate(download._read_span(blob, 0, len(blob.getvalue()), download.LOCAL_CHUNK_SIZE)):
        received.append(chunk)
        clock.now += seconds_per_chunk[min(index, len(seconds_per_chunk) - 1)]
    return b"".join(received)


def test_a_fast_client_gets_larger_reads_once_it_proved_fast(clock: _Clock) -> None:
    data = bytes(range(256)) * (26 * MiB // 256)
    blob = _RecordingBlob(data)
    assert _consume(blob, clock, [0.001]) == data
    assert blob.reads == [MiB] * 16 + [4 * MiB, 4 * MiB, 2 * MiB]


def test_a_slow_client_keeps_small_reads(clock: _Clock) -> None:
    data = bytes(20 * MiB)
    blob = _RecordingBlob(data)
    assert _consume(blob, clock, [1.0]) == data  # 1 MiB/s
    assert blob.reads == [MiB] * 20


def test_socket_buffers_filling_fast_do_not_make_a_slow_client_fast(clock: _Clock) -> None:
    # The first megabytes vanish into socket buffers at once; then the client's own pace shows.
    data = bytes(24 * MiB)
    blob = _RecordingBlob(data)
    assert _consume(blob, clock, [0.0] * 12 + [4.0]) == data  # 12 MiB at once, then 256 KiB/s
    assert blob.reads == [MiB] * 24


def test_a_client_that_slows_down_goes_back_to_small_reads(clock: _Clock) -> None:
    data = bytes(26 * MiB)
    blob = _RecordingBlob(data)
    assert _consume(blob, clock, [0.001] * 17 + [5.0]) == data
    assert blob.reads == [MiB] * 16 + [4 * MiB, 4 * MiB] + [MiB] * 2


def test_remote_reads_stay_at_one_mib_however_fast(clock: _Clock) -> None:
    blob = _RecordingBlob(bytes(32 * MiB))
    list(download._read_span(blob, 0, 32 * MiB, download.CHUNK_SIZE))  # the fake clock never moves: fastest client
    assert blob.reads == [MiB] * 32
