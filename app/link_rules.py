"""The life of one download link, as pure functions over its recorded state (README, "Download tokens").

A link is unused until the first request that starts a body claims it. Until it is spent, requests with the same
link that carry Range resume it; a request without Range is a second copy and is refused. It is spent once the
bytes written under it cover the whole package, once its resume window has passed, once the bytes written under it
reach twice the package's size, or once revoked.

Bytes are reserved before they are written (a block at a time) and the reservation not used is given back when the
request ends, so concurrent requests can never write more than the budget between them, whatever the order in which
they run. A request that ends without writing a byte leaves no trace: a link whose only request wrote nothing is
unused again. The stores (app/burnlist.py) keep the state as JSON and swap it atomically; app/link_ledger.py
applies these rules through them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace

BUDGET_FACTOR = 2  # a link may write at most this many times its package's size
# Bytes a streaming request reserves at a time. One reservation covers a whole package up to this size (the claim is
# then the only write before the end of the request); larger ones reserve again as they go.
RESERVE_BLOCK = 8 << 20
# Requests one link may admit in all: bounds the state kept per link (each admitted request is recorded until it
# ends) and a link used as a stream of one-byte ranges.
MAX_REQUESTS = 256
# The value the stores keep for a burn that predates resumable links (BurnList.burn still writes it: bench compares).
BURNED = "1"

Interval = tuple[int, int]  # [start, end) in the package


class LinkRefused(Exception):
    """This request may not write under this link; `reason` is for logs, metrics and `pkgdl token status`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class LinkState:
    """What the burn-list records for one link."""

    claimed_at: float | None = None  # None: revoked before anyone used it, or a burn from before resumable links
    etag: str = ""  # the package's sha256 at claim: a package replaced since is never mixed into a resume
    size: int = 0
    sent: int = 0  # bytes written under the link, plus those reserved by requests still running
    requests: int = 0  # requests admitted (the claim and every resume)
    pending: dict[str, int] = field(default_factory=dict)  # running request id -> bytes reserved, not yet settled
    covered: tuple[Interval, ...] = ()  # the union of the package ranges written to clients
    revoked_at: float | None = None
    # (request id, bytes) of a claim recorded as already written: see admit's `assume_written`
    assumed: tuple[str, int] | None = None
    legacy: bool = False  # burned before resumable links: spent

    def to_json(self) -> str:
        return json.dumps({"at": self.claimed_at, "etag": self.etag, "size": self.size, "sent": self.sent,
                           "n": self.requests, "pend": self.pending, "cov": self.covered, "rev": self.revoked_at,
                           "as": self.assumed}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> LinkState:
        if text == BURNED:
            return cls(legacy=True)
        data = json.loads(text)
        return cls(claimed_at=data["at"], etag=data["etag"], size=data["size"], sent=data["sent"],
                   requests=data["n"], pending=dict(data["pend"]), covered=tuple(tuple(i) for i in data["cov"]),
                   revoked_at=data["rev"], assumed=tuple(data["as"]) if data.get("as") else None)

    @property
    def complete(self) -> bool:
        """Every byte of the package has been written under this link."""
        return self.claimed_at is not None and covers(self.covered, self.size)

    @property
    def budget_left(self) -> int:
        return BUDGET_FACTOR * self.size - self.sent


def spent_reason(state: LinkState | None, now: float, window: int) -> str | None:
    """Why the link can write no more ("revoked", "completed", "budget", "window", "used"), or None."""
    if state is None:
        return None
    if state.revoked_at is not None:
        return "revoked"
    if state.legacy:
        return "used"
    if state.claimed_at is None:
        return None
    if state.complete:
        return "completed"
    if state.budget_left <= 0 or state.requests >= MAX_REQUESTS:
        return "budget"
    if window <= 0:
        return "used"  # strict single use: the claim spends the link
    if now > state.claimed_at + window:
        return "window"
    return None


def admit(state: LinkState | None, *, rid: str, now: float, window: int, etag: str, size: int, ranged: bool,
          planned: int, whole: bool = False, assume_written: tuple[Interval, ...] | None = None,
          ) -> tuple[LinkState, int]:
    """Admit a request about to write `planned` bytes: the new state and the bytes reserved for it (all of them
    when `whole`, for a sender that cannot come back for more: nginx). Raises LinkRefused.

    `assume_written`: the package ranges of a body handed to the connection in one write. The claim of an unused
    link then records them as written already, so a transfer that succeeds needs no second write (the common case:
    a small package, one chunk); one that fails is undone by its settle. While that one write is under way the link
    looks delivered (resumes are refused until the write fails)."""
    if state is None:
        if assume_written is not None:
            return LinkState(claimed_at=now, etag=etag, size=size, sent=planned, requests=1,
                             covered=union(assume_written), assumed=(rid, planned)), planned
        state = LinkState(claimed_at=now, etag=etag, size=size)
    else:
        reason = spent_reason(state, now, window)
        if reason is not None:
            raise LinkRefused(reason)
        if state.claimed_at is None:
            raise LinkRefused("revoked")
        if not ranged:
            raise LinkRefused("second_copy")  # a link never starts a second whole copy
        if state.etag != etag or state.size != size:
            raise LinkRefused("changed")
    if planned > state.budget_left:
        raise LinkRefused("budget")  # refused whole rather than cut short; running requests may still be cut
    reserved = planned if whole else min(planned, RESERVE_BLOCK)
    return replace(state, sent=state.sent + reserved, requests=state.requests + 1,
                   pending={**state.pending, rid: reserved}), reserved


def reserve_more(state: LinkState, rid: str, wanted: int) -> tuple[LinkState, int]:
    """Reserve up to `wanted` more bytes for a running request (revocation and the window let it finish; the
    budget does not). Raises LinkRefused("budget") when nothing is left."""
    granted = min(wanted, state.budget_left)
    if granted <= 0:
        raise LinkRefused("budget")
    pending = {**state.pending, rid: state.pending.get(rid, 0) + granted}
    return replace(state, sent=state.sent + granted, pending=pending), granted


def settle(state: LinkState, rid: str, written: tuple[Interval, ...], attempted: int) -> LinkState | None:
    """A request ended having handed `attempted` bytes to the connection, of which `written` (package ranges) were
    written: give back what it reserved and did not use, and record what it covered. None: forget the link (its only
    request wrote nothing, so it is unused again)."""
    if state.assumed is not None and state.assumed[0] == rid:
        return _undo_assumed(state, written, attempted)
    if rid not in state.pending:
        return state  # settled already (a report repeated): nothing changes
    reserved = state.pending[rid]
    pending = {other: amount for other, amount in state.pending.items() if other != rid}
    covered = union(state.covered + written)
    if state.size and not covered and not pending and state.requests <= 1 and attempted == 0 \
            and state.revoked_at is None:
        return None
    return replace(state, sent=state.sent - max(0, reserved - attempted), pending=pending, covered=covered)


def _undo_assumed(state: LinkState, written: tuple[Interval, ...], attempted: int) -> LinkState | None:
    """The one write of an assumed claim failed: record what it really wrote. (No other request was admitted
    meanwhile: the link looked delivered.)"""
    planned = state.assumed[1]
    covered = union(written)  # empty ranges (nginx's report of 0 bytes: (0, 0)) cover nothing
    if not covered and attempted == 0 and state.revoked_at is None and state.size:
        return None
    return replace(state, sent=state.sent - max(0, planned - attempted), covered=covered, assumed=None)


def revoke(state: LinkState | None, now: float) -> LinkState:
    """Refuse every later request of the link (a running transfer may finish)."""
    state = state or LinkState()
    return state if state.revoked_at is not None else replace(state, revoked_at=now)


def union(intervals: tuple[Interval, ...]) -> tuple[Interval, ...]:
    """The sorted, merged union of half-open intervals (empty ones dropped)."""
    merged: list[list[int]] = []
    for start, end in sorted(i for i in intervals if i[1] > i[0]):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return tuple((start, end) for start, end in merged)


def covers(intervals: tuple[Interval, ...], size: int) -> bool:
    """Whether merged `intervals` cover [0, size)."""
    return size == 0 or (bool(intervals) and intervals[0][0] <= 0 and intervals[0][1] >= size)
