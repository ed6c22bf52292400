"""What happens around one package delivery, as one observer the download steps call in order: just before the
first body byte (time to first byte; on the token path, the burn that spends the link), and at the end (metrics and
the audit line). The resumable-links work hooks its progress events here."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from app.access import Access
from app.audit import audit_download
from app.errors import AccessDenied
from app.services import Services
from app.tokens import PackageRef


class DeliveryObserver(Protocol):
    """The two moments of a delivery the download steps report."""

    def before_first_byte(self) -> None:
        """Called once the first chunk is in hand and nothing has been sent; raising refuses the delivery."""
        ...

    def finished(self, status: int, sent: int, result: str) -> None:
        """Called once, with the bytes sent and how it ended (completed, aborted, sendfile, offloaded)."""
        ...

    def release_ticket(self) -> str | None:
        """For nginx (X-Accel): a signed ticket that gives the token back if nginx cannot read the file
        (app/offload.py); None when there is no token to give back."""
        ...


class SilentObserver:
    """An observer that records nothing (tests and tools that serve a package outside a request)."""

    def before_first_byte(self) -> None:
        """Nothing to check."""

    def finished(self, status: int, sent: int, result: str) -> None:
        """Nothing to record."""

    def release_ticket(self) -> None:
        """No token."""


@dataclass
class RequestDelivery:
    """The delivery of one request: its access (credentials or a token's claims), its package and its start."""

    services: Services
    access: Access
    ref: PackageRef
    started: float = field(default_factory=time.monotonic)

    def before_first_byte(self) -> None:
        """Time to first byte, then, on the token path, the burn: of concurrent requests only one gets the body."""
        self.services.metrics.first_byte.observe(time.monotonic() - self.started)
        claims = self.access.claims
        if claims is not None and not self.services.burnlist.burn(claims.token_id, claims.expires_at):
            self.services.metrics.token_rejected("used")
            raise AccessDenied()

    def finished(self, status: int, sent: int, result: str) -> None:
        """Metrics by outcome and auth kind, and the audit line (a token is named by its jti, never itself)."""
        kind = "token" if self.access.by_token else "basic"
        self.services.metrics.download_finished(kind, status, sent, result)
        claims, user = self.access.claims, self.access.user
        who = f"token:{claims.token_id}" if claims else user.login if user else "?"
        ids = {"uid": self.ref.uid, "siid": self.ref.siid, "sid": self.ref.sid, "pid": self.ref.pid}
        audit_download(who=who, ids=ids, status=status, sent=sent, started=self.started, result=result)

    def release_ticket(self) -> str | None:
        """Signed only when an offload asks for it (not on every token request)."""
        claims = self.access.claims
        return self.services.tokens.release_ticket(claims.token_id) if claims is not None else None


@dataclass(frozen=True)
class DeliveryPolicy:
    """What differs between deliveries: cache headers, the observer told of the first byte and the end, and
    whether nginx sends the bytes (app/offload.py)."""

    cache_headers: Mapping[str, str]
    observer: DeliveryObserver = field(default_factory=SilentObserver)
    offload: bool = False
