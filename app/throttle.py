"""Failed-login throttling per account and per client address, on the `limits` library (flask-limiter's engine)."""

from __future__ import annotations

import hashlib
import logging
import math
import time
from pathlib import Path

from limits import RateLimitItem, RateLimitItemPerMinute
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from app.sqlite_window import SqliteMovingWindow

log = logging.getLogger("pkgdl.throttle")
REDIS_TIMEOUT_SECONDS = 0.5


# The per-login limit across all addresses, as a multiple of the per-address limits: high enough that an attacker
# spread over many addresses cannot use it to lock the owner out, low enough that guessing one account stays bounded.
ACCOUNT_FACTOR = 10


class LoginThrottle:
    """Counts failed logins so that guessing stays bounded, yet an attacker cannot lock an account's owner out.

    - More than ``per_minute`` failures in a minute for one login from one address, or from one address in all,
      refuse that address (429): an attacker's address is blocked, the owner's is not.
    - More than ``per_minute * ACCOUNT_FACTOR`` failures for one login from all addresses together refuse only the
      addresses that failed for that login in the window: a guesser spread over many addresses gets about one try
      per fresh address, while the owner, on an address that has not failed, signs in as usual.

    Keys are fixed-size digests, never the attacker-chosen login itself. With Redis the counts are shared by every
    worker and host, with SQLite by the workers of one machine. When the store does not answer, counting falls back
    to this process's memory: logins keep working (the Basic path must survive a burn-list outage) and guessing is
    still limited per worker.
    """

    def __init__(self, storage_url: str, per_minute: int) -> None:
        self.item = RateLimitItemPerMinute(per_minute)
        self.account_item = RateLimitItemPerMinute(per_minute * ACCOUNT_FACTOR)
        self.shared = _limiter_for(storage_url)
        self.local = MovingWindowRateLimiter(storage_from_string("memory://"))

    def retry_after(self, login: str, address: str) -> int | None:
        """Seconds to wait when this address may not try this login now, else None."""
        pair, from_address, account = _keys(login, address)
        for key in (pair, from_address):
            if not self._call(self.shared, "test", self.item, key):
                return self._wait(self.item, key)
        if not self._call(self.shared, "test", self.account_item, account) and self._has_failed(pair):
            return self._wait(self.account_item, account)
        return None

    def failed(self, login: str, address: str) -> None:
        """Record one failed login."""
        pair, from_address, account = _keys(login, address)
        for item, key in ((self.item, pair), (self.item, from_address), (self.account_item, account)):
            self._call(self.shared, "hit", item, key)

    def _has_failed(self, pair: tuple[str, str]) -> bool:
        return self._call(self.shared, "get_window_stats", self.item, pair).remaining < self.item.amount

    def _wait(self, item: RateLimitItem, key: tuple[str, str]) -> int:
        reset_at = self._call(self.shared, "get_window_stats", item, key).reset_time
        return max(1, math.ceil(reset_at - time.time()))

    def _call(self, limiter: MovingWindowRateLimiter, method: str, item: RateLimitItem,  # noqa: ANN202
              key: tuple[str, str]):
        try:
            return getattr(limiter, method)(item, *key)
        except Exception as exc:  # noqa: BLE001 - any storage failure: count locally instead
            if limiter is self.local:
                raise
            log.warning("login throttle storage unavailable (%s); counting in this process", type(exc).__name__)
            return getattr(self.local, method)(item, *key)


def _keys(login: str, address: str) -> tuple[tuple[str, str], ...]:
    """(login, address), address, login: each a fixed-size digest (a 5 KB login costs a store no more than 'bob')."""
    login_id, address_id = _digest(login), _digest(address)
    return (("pkgdl-pair", f"{login_id}.{address_id}"), ("pkgdl-address", address_id), ("pkgdl-login", login_id))


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def throttle_url_for(burnlist_url: str) -> str:
    """Failed logins are counted where the burn-list lives: in Redis (shared by every host), or in a SQLite file
    beside the burn-list's (shared by the workers of this machine)."""
    if burnlist_url.startswith("sqlite:///"):
        path = Path(burnlist_url.removeprefix("sqlite:///")).with_name("login-failures.sqlite3")
        return f"sqlite:///{path}"
    return burnlist_url


def purge_failures(burnlist_url: str) -> int:
    """Delete the failed-login rows that left the window (SQLite; Redis expires its own keys): how many went."""
    limiter = _limiter_for(throttle_url_for(burnlist_url))
    return limiter.purge() if isinstance(limiter, SqliteMovingWindow) else 0


def _limiter_for(storage_url: str):  # noqa: ANN202 - a MovingWindowRateLimiter or its SQLite counterpart
    """`redis://...` and `memory://` through the limits library; `sqlite:////abs/path` through our small window."""
    if storage_url.startswith("sqlite:///"):
        return SqliteMovingWindow(storage_url.removeprefix("sqlite:///"))
    options = {}
    if storage_url.startswith(("redis://", "rediss://")):
        options = {"socket_timeout": REDIS_TIMEOUT_SECONDS, "socket_connect_timeout": REDIS_TIMEOUT_SECONDS}
    return MovingWindowRateLimiter(storage_from_string(storage_url, **options))
