"""What happens around one package delivery, as one observer the download steps call in order: just before the
first body byte (time to first byte; on the token path, the claim or resume of the link), before each chunk is handed
to the connection (on the token path, the bytes it reserves), and at the end (the link settled, metrics and the audit
line)."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from app.access import Access
from app.audit import audit_download
from app.burnlist import BurnListUnavailable
from app.errors import AccessDenied
from app.link_ledger import Grant
from app.link_rules import Interval, LinkRefused
from app.manifest import Package
from app.services import Services
from app.tokens import PackageRef

log = logging.getLogger("pkgdl.links")


@dataclass(frozen=True)
class BodyPlan:
    """A body about to be sent: its length, whether it answers a Range, and where the package's bytes sit in it
    (spans of (offset in the body, offset in the package, length); multipart framing lies between them)."""

    length: int
    ranged: bool
    spans: tuple[tuple[int, int, int], ...]

    @classmethod
    def whole(cls, size: int) -> BodyPlan:
        """The plan of a 200: the whole package."""
        return cls(size, ranged=False, spans=((0, 0, size),))

    def written(self, sent: int) -> tuple[Interval, ...]:
        """The package ranges the first `sent` bytes of the body carried."""
        return tuple((start, start + min(length, sent - offset))
                     for offset, start, length in self.spans if sent > offset)


class DeliveryObserver(Protocol):
    """The moments of a delivery the download steps report."""

    def before_first_byte(self, body: BodyPlan, whole: bool = False, in_hand: bool = False) -> None:
        """Called once the first chunk is in hand and nothing has been sent (`whole`: another sender, nginx, will
        send the body, in one go; `in_hand`: that chunk is the whole body); raising refuses the delivery."""
        ...

    def sending(self, length: int) -> None:
        """Called before `length` more bytes are handed to the connection; raising aborts it."""
        ...

    def finished(self, status: int, sent: int, result: str) -> None:
        """Called once, with the bytes sent and how it ended (completed, aborted, sendfile, offloaded)."""
        ...

    def offload_ticket(self) -> str | None:
        """For nginx (X-Accel): a signed ticket with which it reports how far it got (app/offload.py); None when
        there is no link to report on."""
        ...

    def recorded_whole(self) -> bool:
        """Whether the link's claim recorded the whole body as written already (a body `in_hand`): only a transfer
        that breaks has anything to report."""
        ...


class SilentObserver:
    """An observer that records nothing (tests and tools that serve a package outside a request)."""

    def before_first_byte(self, body: BodyPlan, whole: bool = False, in_hand: bool = False) -> None:
        """Nothing to check."""

    def sending(self, length: int) -> None:
        """Nothing to count."""

    def finished(self, status: int, sent: int, result: str) -> None:
        """Nothing to record."""

    def offload_ticket(self) -> None:
        """No link."""

    def recorded_whole(self) -> bool:
        """No link."""
        return False


@dataclass
class RequestDelivery:
    """The delivery of one request: its access (credentials or a token's claims), its package and its start."""

    services: Services
    access: Access
    ref: PackageRef
    package: Package
    started: float = field(default_factory=time.monotonic)
    body: BodyPlan | None = None
    grant: Grant | None = None
    spent: str | None = None  # why this request's end spent its link

    def before_first_byte(self, body: BodyPlan, whole: bool = False, in_hand: bool = False) -> None:
        """Time to first byte, then, on the token path, the claim or resume of the link (app/link_rules.py): of
        concurrent first requests only one gets a body. A body in hand is handed over in one write: its claim
        records it as written: no second burn-list write when it succeeds (bench, token downloads of a 16 KiB package:
        with a settle per download 0.52 of the previous release on SQLite, 0.72 on Redis; without, 1.01 and 1.05)."""
        self.services.metrics.first_byte.observe(time.monotonic() - self.started)
        self.body = body
        claims = self.access.claims
        if claims is None:
            return
        try:
            self.grant = self.services.links.admit(
                claims, etag=self.package.sha256, size=self.package.size,
                ranged=body.ranged, planned=body.length, whole=whole,
                assume_written=body.written(body.length) if in_hand else None)
        except LinkRefused as refused:
            self.services.metrics.token_rejected(refused.reason)
            raise AccessDenied() from None
        self.services.metrics.link_event("claim" if self.grant.first else "resume")

    def sending(self, length: int) -> None:
        """On the token path, reserve the bytes first: a link never writes past its budget (403 before the first
        byte, an aborted connection after it)."""
        if self.grant is None:
            return
        try:
            self.grant.reserve(length)
        except LinkRefused as refused:
            self.services.metrics.token_rejected(refused.reason)
            raise AccessDenied() from None

    def finished(self, status: int, sent: int, result: str) -> None:
        """The link settled (unless nginx sends: it reports itself), metrics by outcome and auth kind, and the
        audit line (a token is named by its jti, never itself)."""
        if self.grant is not None and self.body is not None and result != "offloaded":
            self._settle(sent)
        kind = "token" if self.access.by_token else "basic"
        self.services.metrics.download_finished(kind, status, sent, result)
        claims, user = self.access.claims, self.access.user
        who = f"token:{claims.token_id}" if claims else user.login if user else "?"
        ids = {"uid": self.ref.uid, "siid": self.ref.siid, "sid": self.ref.sid, "pid": self.ref.pid}
        link = None if self.grant is None else {"link": "claim" if self.grant.first else "resume",
                                               **({"spent": self.spent} if self.spent else {})}
        audit_download(who=who, ids=ids, status=status, sent=sent, started=self.started, result=result, link=link)

    def _settle(self, sent: int) -> None:
        """Record what this request wrote; a burn-list that cannot answer now leaves the link with the whole
        reservation counted as written (it errs towards spending) and the request's end is still audited."""
        try:
            state = self.grant.settle(self.body.written(sent), completed=sent == self.body.length)
        except BurnListUnavailable as fault:
            log.warning("link %s not settled after %d bytes: %s", self.grant.link.token_id, sent, fault)
            return
        self.spent = self.services.links.why_spent(state)
        if self.spent is not None:
            self.services.metrics.link_event(f"spent_{self.spent}")

    def recorded_whole(self) -> bool:
        """The claim was an assumed one (link_rules.admit's `assume_written`)."""
        return self.grant is not None and self.grant.settled is not None

    def offload_ticket(self) -> str | None:
        """Signed only when an offload asks for it (not on every token request)."""
        if self.grant is None:
            return None
        return self.services.tokens.offload_ticket(self.grant.link.token_id, self.grant.rid,
                                                   self.grant.link.expires_at)


@dataclass(frozen=True)
class DeliveryPolicy:
    """What differs between deliveries: cache headers, the observer told of the first byte and the end, and
    whether nginx sends the bytes (app/offload.py)."""

    cache_headers: Mapping[str, str]
    observer: DeliveryObserver = field(default_factory=SilentObserver)
    offload: bool = False
