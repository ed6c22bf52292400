"""Failed-login throttling per account and per client address, on the `limits` library (flask-limiter's engine)."""

from __future__ import annotations

import logging
import math
import time

from limits import RateLimitItemPerMinute
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from app.sqlite_window import SqliteMovingWindow

log = logging.getLogger("pkgdl.throttle")
REDIS_TIMEOUT_SECONDS = 0.5


class LoginThrottle:
    """Counts failed logins; more than ``per_minute`` for one login or one address blocks both for the window.

    With Redis the counts are shared by every worker and host, with SQLite by the workers of one machine. When the
    store does not answer, counting falls back to this process's memory: logins keep working (the Basic path must
    survive a burn-list outage) and guessing is still limited per worker.
    """

    def __init__(self, storage_url: str, per_minute: int) -> None:
        self.item = RateLimitItemPerMinute(per_minute)
        self.shared = _limiter_for(storage_url)
        self.local = MovingWindowRateLimiter(storage_from_string("memory://"))

    def retry_after(self, login: str, address: str) -> int | None:
        """Seconds to wait when the login or the address is blocked, else None."""
        for key in self._keys(login, address):
            if not self._call(self.shared, "test", key):
                reset_at = self._call(self.shared, "get_window_stats", key).reset_time
                return max(1, math.ceil(reset_at - time.time()))
        return None

    def failed(self, login: str, address: str) -> None:
        """Record one failed login."""
        for key in self._keys(login, address):
            self._call(self.shared, "hit", key)

    def _call(self, limiter: MovingWindowRateLimiter, method: str, key: tuple[str, str]):  # noqa: ANN202
        try:
            return getattr(limiter, method)(self.item, *key)
        except Exception as exc:  # noqa: BLE001 - any storage failure: count locally instead
            if limiter is self.local:
                raise
            log.warning("login throttle storage unavailable (%s); counting in this process", type(exc).__name__)
            return getattr(self.local, method)(self.item, *key)

    @staticmethod
    def _keys(login: str, address: str) -> tuple[tuple[str, str], ...]:
        return (("pkgdl-login", login), ("pkgdl-address", address))


def _limiter_for(storage_url: str):  # noqa: ANN202 - a MovingWindowRateLimiter or its SQLite counterpart
    """`redis://...` and `memory://` through the limits library; `sqlite:////abs/path` through our small window."""
    if storage_url.startswith("sqlite:///"):
        return SqliteMovingWindow(storage_url.removeprefix("sqlite:///"))
    options = {}
    if storage_url.startswith(("redis://", "rediss://")):
        options = {"socket_timeout": REDIS_TIMEOUT_SECONDS, "socket_connect_timeout": REDIS_TIMEOUT_SECONDS}
    return MovingWindowRateLimiter(storage_from_string(storage_url, **options))
