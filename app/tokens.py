"""Single-use download tokens: signing, expiry and payload checks (replay is app.burnlist's job)."""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from itsdangerous import BadData, BadPayload, SignatureExpired, TimestampSigner, URLSafeTimedSerializer

SALT = "pkgdl.package-binary"
OFFLOAD_SALT = "pkgdl.offload-report"
# nginx reports how far it got when its transfer ends, which may be long after the token expired (a slow client on a
# large package): a ticket stays good for the token's lifetime plus this.
OFFLOAD_TICKET_GRACE = 86400
# Real tokens are about 150 characters; the cap stops oversized input before any base64 or HMAC work.
MAX_TOKEN_LENGTH = 4096
# itsdangerous emits only URL-safe base64 without padding and "." separators. Refusing everything else
# also refuses the "=" padded spellings that itsdangerous would otherwise accept for the same token.
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9_.\-]+")
_JTI = re.compile(r"[A-Za-z0-9_\-]{16,64}")
# ASCII digits only: str.isdigit() would accept "²" or Arabic-Indic digits; 20 digits bound int() work.
_DECIMAL = re.compile(r"[0-9]{1,20}")

RejectionReason = Literal["malformed", "bad_signature", "expired", "future", "bad_payload", "wrong_package"]


@dataclass(frozen=True)
class PackageRef:
    """The path ids that name one package binary."""

    uid: str
    siid: int
    sid: int
    pid: int


@dataclass(frozen=True)
class TokenClaims:
    """What a verified token grants, and until when (unix seconds, inclusive)."""

    ref: PackageRef
    token_id: str
    expires_at: int


class TokenRejected(Exception):
    """A token that must not grant a download; `reason` is for logs and metrics, never for the client."""

    def __init__(self, reason: RejectionReason) -> None:
        super().__init__(reason)
        self.reason: RejectionReason = reason


class _ClockedSigner(TimestampSigner):
    """A TimestampSigner whose clock is injected, so signing and age checks share one (freezable) time."""

    def __init__(self, *args: Any, clock: Callable[[], float], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clock = clock

    def get_timestamp(self) -> int:
        """Return the injected clock's time in whole seconds."""
        return int(self._clock())


class TokenService:
    """Mints and verifies download tokens for one set of signing keys and one lifetime."""

    def __init__(
        self, secret_keys: Sequence[str], max_age: int, clock: Callable[[], float] = time.time
    ) -> None:
        keys = list(secret_keys)
        if not keys or not all(isinstance(key, str) and key for key in keys):
            raise ValueError("secret_keys must be a non-empty list of non-empty strings (oldest first)")
        if isinstance(max_age, bool) or not isinstance(max_age, int) or max_age <= 0:
            raise ValueError(f"max_age must be a positive number of seconds, got {max_age!r}")
        self._keys = keys
        self._max_age = max_age
        self._clock = clock
        self._serializer = self._make_serializer(clock)

    @property
    def max_age(self) -> int:
        """Token lifetime in seconds."""
        return self._max_age

    def _make_serializer(self, clock: Callable[[], float]) -> URLSafeTimedSerializer:
        # itsdangerous signs with the last key and verifies with every key, newest first.
        return URLSafeTimedSerializer(
            self._keys, salt=SALT, signer=_ClockedSigner, signer_kwargs={"clock": clock}
        )

    def mint(self, ref: PackageRef, max_age: int | None = None) -> str:
        """Return a new token for `ref`, valid for `max_age` seconds (default: the service lifetime)."""
        lifetime = self._max_age if max_age is None else max_age
        if isinstance(lifetime, bool) or not isinstance(lifetime, int) or not 0 < lifetime <= self._max_age:
            raise ValueError(
                f"max_age must be between 1 and the token lifetime ({self._max_age} s), got {max_age!r}"
            )
        payload = {
            "uid": ref.uid,
            "siid": ref.siid,
            "sid": ref.sid,
            "pid": ref.pid,
            "jti": secrets.token_urlsafe(16),
            # The lifetime is fixed when the token is minted: raising PKGDL_TOKEN_MAX_AGE later must not revive a
            # token whose burn-list entry was purged at its old expiry.
            "exp": int(self._clock()) + lifetime,
        }
        return self._serializer.dumps(payload)

    def offload_ticket(self, token_id: str, request_id: str, expires_at: int) -> str:
        """A signed ticket naming one offloaded request of a link, with which nginx reports how far it got
        (app/offload.py). Its own salt: it can never pass for a download token."""
        return self._offload_signer().sign(f"{token_id}.{request_id}.{expires_at}").decode("ascii")

    def offload_report(self, ticket: str) -> tuple[str, str, int] | None:
        """(token id, request id, token expiry) of a genuine, current offload ticket, else None."""
        if not ticket or len(ticket) > MAX_TOKEN_LENGTH or not _TOKEN_CHARS.fullmatch(ticket):
            return None
        try:
            signed = self._offload_signer().unsign(ticket, max_age=self._max_age + OFFLOAD_TICKET_GRACE)
        except BadData:
            return None
        token_id, request_id, expires_at = signed.decode("ascii").rsplit(".", 2)
        return token_id, request_id, int(expires_at)

    def _offload_signer(self) -> _ClockedSigner:
        return _ClockedSigner(self._keys, salt=OFFLOAD_SALT, clock=self._clock)

    def inspect(self, token: str) -> tuple[TokenClaims, int]:
        """The claims of a genuine token and when it was issued, expired or not (for `pkgdl token status` and
        `revoke`: an operator asks about any link, whatever its package); TokenRejected when it is not genuine."""
        if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH or not _TOKEN_CHARS.fullmatch(token):
            raise TokenRejected("malformed")
        try:
            payload, signed_at = self._serializer.loads(token, return_timestamp=True)  # no max_age: any age
        except BadPayload:
            raise TokenRejected("bad_payload") from None
        except BadData:
            raise TokenRejected("bad_signature") from None
        ref, issued = _parse_payload(payload), int(signed_at.timestamp())
        expires_at = min(issued + self._max_age, _parse_expiry(payload.get("exp")))
        return TokenClaims(ref=ref, token_id=payload["jti"], expires_at=int(expires_at)), issued

    def verify(self, token: str, ref: PackageRef) -> TokenClaims:
        """Return the claims of `token` if it is genuine, current and for `ref`; else raise TokenRejected."""
        if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH or not _TOKEN_CHARS.fullmatch(token):
            raise TokenRejected("malformed")
        try:
            payload, signed_at = self._serializer.loads(token, max_age=self._max_age, return_timestamp=True)
        except SignatureExpired as exc:
            # itsdangerous raises SignatureExpired for age > max_age and for age < 0 (no skew tolerance).
            signed = exc.date_signed.timestamp() if exc.date_signed is not None else 0
            expired = signed < int(self._clock()) - self._max_age
            raise TokenRejected("expired" if expired else "future") from None
        except BadPayload:
            raise TokenRejected("bad_payload") from None
        except BadData:
            raise TokenRejected("bad_signature") from None
        claimed = _parse_payload(payload)
        if claimed != ref:
            raise TokenRejected("wrong_package")
        # The earlier of the minted expiry (absent from tokens made before it existed) and the current lifetime.
        expires_at = min(int(signed_at.timestamp()) + self._max_age, _parse_expiry(payload.get("exp")))
        if int(self._clock()) > expires_at:
            raise TokenRejected("expired")
        return TokenClaims(ref=ref, token_id=payload["jti"], expires_at=expires_at)


def _parse_payload(payload: object) -> PackageRef:
    """Return the package a signed payload names, or raise TokenRejected("bad_payload")."""
    if not isinstance(payload, dict):
        raise TokenRejected("bad_payload")
    uid, jti = payload.get("uid"), payload.get("jti")
    if not isinstance(uid, str) or not isinstance(jti, str) or not _JTI.fullmatch(jti):
        raise TokenRejected("bad_payload")
    return PackageRef(
        uid=uid,
        siid=_parse_id(payload.get("siid")),
        sid=_parse_id(payload.get("sid")),
        pid=_parse_id(payload.get("pid")),
    )


def _parse_expiry(value: object) -> int | float:
    """The `exp` claim in unix seconds; infinity when the token has none; bad_payload when it is not an integer."""
    if value is None:
        return float("inf")
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise TokenRejected("bad_payload")


def _parse_id(value: object) -> int:
    """Return an id given as a JSON integer or a decimal string; bools, floats and signs are refused."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and _DECIMAL.fullmatch(value):
        return int(value)
    raise TokenRejected("bad_payload")
