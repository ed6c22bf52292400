"""Failed-login throttling per account and per client address, on the `limits` library (flask-limiter's engine)."""

from __future__ import annotations

import math
import time

from limits import RateLimitItemPerMinute
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter


class LoginThrottle:
    """Counts failed logins; more than ``per_minute`` for one login or one address blocks both for the window."""

    def __init__(self, storage_url: str, per_minute: int) -> None:
        self.item = RateLimitItemPerMinute(per_minute)
        self.limiter = MovingWindowRateLimiter(storage_from_string(storage_url))

    def retry_after(self, login: str, address: str) -> int | None:
        """Seconds to wait when the login or the address is blocked, else None."""
        for key in self._keys(login, address):
            if not self.limiter.test(self.item, *key):
                reset_at = self.limiter.get_window_stats(self.item, *key).reset_time
                return max(1, math.ceil(reset_at - time.time()))
        return None

    def failed(self, login: str, address: str) -> None:
        """Record one failed login."""
        for key in self._keys(login, address):
            self.limiter.hit(self.item, *key)

    @staticmethod
    def _keys(login: str, address: str) -> tuple[tuple[str, str], ...]:
        return (("pkgdl-login", login), ("pkgdl-address", address))
