"""Download links as the burn-list records them: app/link_rules.py's rules applied through a store's
compare-and-swap, so that every worker on every host sees one history per link."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from app.burnlist import BurnList, BurnListUnavailable
from app.link_rules import (
    RESERVE_BLOCK,
    Interval,
    LinkState,
    admit,
    reserve_more,
    revoke,
    settle,
    spent_reason,
)

# Compare-and-swap attempts before giving up (503): only requests racing on one link ever retry.
SWAP_ATTEMPTS = 64
_UNREAD = object()  # the entry has not been read yet
R = TypeVar("R")


class LinkId(Protocol):
    """One link's identity in the burn-list: its token id, and when its token expires (the entry's lifetime);
    app.tokens.TokenClaims is one."""

    token_id: str
    expires_at: int


@dataclass(frozen=True)
class Link:
    """A link named by its ids alone (nginx's report of an offloaded transfer)."""

    token_id: str
    expires_at: int


class LinkLedger:
    """Claims, resumes, settles and revokes links in one burn-list."""

    def __init__(self, store: BurnList, resume_window: int, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.resume_window = resume_window
        self._clock = clock

    def state(self, link: LinkId) -> LinkState | None:
        """The recorded state (None: never used)."""
        value = self.store.read(link.token_id)
        return None if value is None else LinkState.from_json(value)

    def refusal(self, link: LinkId) -> str | None:
        """Why the link can write nothing more (spent, revoked), or None (unused, or claimed and resumable)."""
        return self.why_spent(self.state(link))

    def why_spent(self, state: LinkState | None) -> str | None:
        """Why a link in `state` can write nothing more now, or None."""
        return spent_reason(state, self._clock(), self.resume_window)

    def admit(self, link: LinkId, *, etag: str, size: int, ranged: bool, planned: int, whole: bool = False,
              assume_written: tuple[Interval, ...] | None = None) -> Grant:
        """Admit a request about to write `planned` bytes of a body: the claim of an unused link, or a resume
        (`assume_written`: see link_rules.admit). Raises LinkRefused; BurnListUnavailable when the store cannot
        answer."""
        rid = secrets.token_hex(6)
        now = self._clock()
        done = self._change(link, lambda state: admit(
            state, rid=rid, now=now, window=self.resume_window, etag=etag, size=size, ranged=ranged,
            planned=planned, whole=whole, assume_written=assume_written), known=None)  # a claim needs no read first
        assumed = done.state.assumed is not None and done.state.assumed[0] == rid
        return Grant(self, link, rid, done.result, first=done.created, known=done.value,
                     settled=done.state if assumed else None)

    def settle(self, link: LinkId, rid: str, written: tuple[Interval, ...], attempted: int,
               known: str | None | object = _UNREAD) -> LinkState | None:
        """Record how a request ended (see link_rules.settle); the state after it."""
        if known is _UNREAD and self.store.read(link.token_id) is None:
            return None  # nothing to settle (the entry expired with its token)
        return self._change(link, lambda state: (settle(state, rid, written, attempted), None), known=known,
                            durable=False).state

    def revoke(self, link: LinkId) -> None:
        """Refuse every later request of the link."""
        now = self._clock()
        self._change(link, lambda state: (revoke(state, now), None), known=_UNREAD)

    def _reserve(self, grant: Grant, wanted: int) -> int:
        done = self._change(grant.link, lambda state: reserve_more(state, grant.rid, wanted), known=grant.known,
                            durable=False)
        grant.known = done.value
        return done.result

    def _change(self, link: LinkId, change: Callable[[LinkState | None], tuple[LinkState | None, R]],
                known: str | None | object, durable: bool = True) -> _Changed[R]:
        """Apply `change` to the entry by compare-and-swap, re-reading and retrying when another request changed it
        meanwhile (`known`: the value the caller expects, to skip the first read). Claims, resumes and revocations
        are durable; a request's further reservations and its settling need not be (BurnList.swap): a power loss
        may undo them, leaving the link claimed with the request's first reservation counted as written and its
        coverage unrecorded (resumable within its budget), and the transfers it cut short uncounted beyond one
        block each (SECURITY.md)."""
        for _ in range(SWAP_ATTEMPTS):
            current = self.store.read(link.token_id) if known is _UNREAD else known
            state = None if current is None else LinkState.from_json(current)
            new_state, result = change(state)
            new = None if new_state is None else new_state.to_json()
            if new == current or self.store.swap(link.token_id, current, new, link.expires_at, durable=durable):
                return _Changed(result, new_state, created=current is None and new is not None, value=new)
            known = _UNREAD
        raise BurnListUnavailable(f"link {link.token_id}: too many concurrent changes")


@dataclass(frozen=True)
class _Changed(Generic[R]):
    """One applied change: its result, the state and value written, and whether that created the entry."""

    result: R
    state: LinkState | None
    created: bool
    value: str | None


class Grant:
    """What one admitted request may write: bytes are reserved before they are handed to the connection, and what
    was not written is given back when it ends."""

    def __init__(self, ledger: LinkLedger, link: LinkId, rid: str, reserved: int, first: bool,
                 known: str | None, settled: LinkState | None = None) -> None:
        self.ledger, self.link, self.rid = ledger, link, rid
        self.first = first  # this request claimed the link
        self.known = known  # the entry as this request last wrote it: its next change usually needs no read
        self.settled = settled  # an assumed claim: the state already recorded for the request's success
        self._left = reserved
        self.attempted = 0

    def reserve(self, length: int) -> None:
        """Called before `length` more bytes are handed to the connection; raises LinkRefused("budget")."""
        while self._left < length:
            self._left += self.ledger._reserve(self, max(RESERVE_BLOCK, length - self._left))
        self._left -= length
        self.attempted += length

    def settle(self, written: tuple[Interval, ...], completed: bool) -> LinkState | None:
        """The request ended (`completed`: its whole body was written): `written` are the package ranges the
        connection took. An assumed claim that completed has nothing left to record."""
        if self.settled is not None and completed:
            return self.settled
        return self.ledger.settle(self.link, self.rid, written, self.attempted, known=self.known)
