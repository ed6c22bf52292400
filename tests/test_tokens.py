"""Token signing and verification under a frozen clock."""

from __future__ import annotations

import string
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from itsdangerous.encoding import base64_encode

from app.tokens import (
    MAX_TOKEN_LENGTH,
    OFFLOAD_TICKET_GRACE,
    SALT,
    PackageRef,
    TokenClaims,
    TokenRejected,
    TokenService,
)

NOW = 1_700_000_000
MAX_AGE = 3600
REF = PackageRef(uid="alice", siid=12, sid=34, pid=56)
VALID_JTI = "A" * 22


class FrozenClock:
    """A clock that only moves when a test moves it."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class _FixedSigner(TimestampSigner):
    """Signs with the timestamp NOW, to build hand-made payloads."""

    def get_timestamp(self) -> int:
        return NOW


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(NOW + 0.5)


@pytest.fixture
def service(clock: FrozenClock) -> TokenService:
    return TokenService(["key-old", "key-new"], MAX_AGE, clock=clock)


@pytest.fixture
def make_service(clock: FrozenClock) -> Callable[..., TokenService]:
    def make(keys: list[str], max_age: int = MAX_AGE) -> TokenService:
        return TokenService(keys, max_age, clock=clock)

    return make


def sign(payload: object, keys: list[str] | None = None, salt: str = SALT) -> str:
    """Sign any payload at NOW, as a holder of the keys could."""
    serializer = URLSafeTimedSerializer(keys or ["key-old", "key-new"], salt=salt, signer=_FixedSigner)
    return serializer.dumps(payload)


def payload(**changes: object) -> dict[str, object]:
    """A valid payload for REF, with some fields replaced (or removed when given as ...)."""
    fields: dict[str, object] = {"uid": "alice", "siid": 12, "sid": 34, "pid": 56, "jti": VALID_JTI}
    fields.update(changes)
    return {name: value for name, value in fields.items() if value is not ...}


def reason(service: TokenService, token: object, ref: PackageRef = REF) -> str:
    """Return the rejection reason, failing the test if the token is accepted."""
    with pytest.raises(TokenRejected) as caught:
        service.verify(token, ref)  # type: ignore[arg-type]
    return caught.value.reason


def test_mint_then_verify_returns_claims(service: TokenService) -> None:
    claims = service.verify(service.mint(REF), REF)
    assert isinstance(claims, TokenClaims)
    assert claims.ref == REF
    assert claims.expires_at == NOW + MAX_AGE
    assert len(claims.token_id) == 22  # 16 random bytes in URL-safe base64


def test_payload_holds_the_ids_and_a_fresh_jti(service: TokenService) -> None:
    loader = URLSafeTimedSerializer(["key-new"], salt=SALT)
    first, second = (loader.loads_unsafe(service.mint(REF))[1] for _ in range(2))
    assert set(first) == {"uid", "siid", "sid", "pid", "jti", "exp"}
    assert first["exp"] == NOW + MAX_AGE
    assert (first["uid"], first["siid"], first["sid"], first["pid"]) == ("alice", 12, 34, 56)
    assert first["jti"] != second["jti"]


@pytest.mark.parametrize(
    ("offset", "expected"),
    [(0, None), (MAX_AGE - 1, None), (MAX_AGE, None), (MAX_AGE + 0.99, None), (MAX_AGE + 1, "expired")],
)
def test_expiry_boundary(
    service: TokenService, clock: FrozenClock, offset: float, expected: str | None
) -> None:
    clock.now = NOW
    token = service.mint(REF)
    clock.now = NOW + offset
    if expected is None:
        assert service.verify(token, REF).expires_at == NOW + MAX_AGE
    else:
        assert reason(service, token) == expected


@pytest.mark.parametrize("seconds_early", [1, 60, 10 * MAX_AGE])
def test_future_timestamp_is_rejected_without_tolerance(
    service: TokenService, clock: FrozenClock, seconds_early: int
) -> None:
    clock.now = NOW
    token = service.mint(REF)
    clock.now = NOW - seconds_early
    assert reason(service, token) == "future"


def test_wrong_salt_is_a_bad_signature(service: TokenService) -> None:
    assert reason(service, sign(payload(), salt="itsdangerous")) == "bad_signature"


def test_unknown_key_is_a_bad_signature(service: TokenService) -> None:
    assert reason(service, sign(payload(), keys=["someone-elses-key"])) == "bad_signature"


@pytest.mark.parametrize(
    ("mint_keys", "verify_keys", "accepted"),
    [
        (["a", "b"], ["b"], True),  # the newest key signs
        (["a", "b"], ["a", "b"], True),
        (["a", "b"], ["a"], False),  # so the old key alone cannot verify
        (["a"], ["a", "b"], True),  # tokens from before a rotation keep working
        (["a"], ["b"], False),  # until the old key is retired
        (["a"], ["b", "a"], True),
    ],
)
def test_key_rotation(
    make_service: Callable[..., TokenService], mint_keys: list[str], verify_keys: list[str], accepted: bool
) -> None:
    token = make_service(mint_keys).mint(REF)
    verifier = make_service(verify_keys)
    if accepted:
        assert verifier.verify(token, REF).ref == REF
    else:
        assert reason(verifier, token) == "bad_signature"


@pytest.mark.parametrize(
    "other",
    [
        PackageRef(uid="bob", siid=12, sid=34, pid=56),
        PackageRef(uid="Alice", siid=12, sid=34, pid=56),
        PackageRef(uid="alice", siid=13, sid=34, pid=56),
        PackageRef(uid="alice", siid=12, sid=35, pid=56),
        PackageRef(uid="alice", siid=12, sid=34, pid=57),
    ],
)
def test_ids_must_match_the_path(service: TokenService, other: PackageRef) -> None:
    assert reason(service, service.mint(REF), other) == "wrong_package"


@pytest.mark.parametrize(
    "ids",
    [
        {"siid": "12", "sid": "34", "pid": "56"},
        {"siid": "012", "sid": 34, "pid": "0056"},
        {"siid": 12, "sid": "34", "pid": 56},
    ],
)
def test_numeric_ids_may_be_decimal_strings(service: TokenService, ids: dict[str, object]) -> None:
    claims = service.verify(sign(payload(**ids)), REF)
    assert claims.ref == REF
    assert claims.token_id == VALID_JTI
    assert claims.expires_at == NOW + MAX_AGE


def test_decimal_string_ids_still_have_to_match(service: TokenService) -> None:
    assert reason(service, sign(payload(pid="57"))) == "wrong_package"


@pytest.mark.parametrize(
    "bad_id",
    [
        True,
        False,
        12.0,
        -12,
        "-12",
        "+12",
        " 12",
        "12 ",
        "1_2",
        "1e3",
        "0x0c",
        "",
        "١٢",
        "²",
        None,
        [12],
        {"v": 12},
    ],
)
@pytest.mark.parametrize("field", ["siid", "sid", "pid"])
def test_malformed_numeric_ids_are_a_bad_payload(service: TokenService, field: str, bad_id: object) -> None:
    assert reason(service, sign(payload(**{field: bad_id}))) == "bad_payload"


@pytest.mark.parametrize(
    "bad",
    [
        [1, 2, 3],
        "alice",
        None,
        12,
        payload(uid=7),
        payload(uid=None),
        payload(uid=...),
        payload(siid=...),
        payload(sid=...),
        payload(pid=...),
        payload(jti=...),
        payload(jti=12345678901234567890),
        payload(jti="short"),
        payload(jti="x" * 65),
        payload(jti="has spaces and more than 16"),
        payload(jti="newline\ninjected-into-logs"),
    ],
)
def test_malformed_payload(service: TokenService, bad: object) -> None:
    assert reason(service, sign(bad)) == "bad_payload"


def test_signed_bytes_that_are_not_json_are_a_bad_payload(service: TokenService) -> None:
    signer = URLSafeTimedSerializer(["key-new"], salt=SALT, signer=_FixedSigner).make_signer()
    token = signer.sign(base64_encode(b"{not json")).decode()
    assert reason(service, token) == "bad_payload"


def test_extra_payload_fields_are_ignored(service: TokenService) -> None:
    assert service.verify(sign(payload(v=2)), REF).token_id == VALID_JTI


@pytest.mark.parametrize("padding", ["=", "==", "===="])
def test_padded_spellings_are_refused(service: TokenService, padding: str) -> None:
    assert reason(service, service.mint(REF) + padding) == "malformed"


def test_other_spellings_of_one_token_carry_the_same_jti(service: TokenService) -> None:
    token = service.mint(REF)
    original = service.verify(token, REF).token_id
    accepted = set()
    for char in string.ascii_letters + string.digits + "-_":
        variant = token[:-1] + char
        try:
            accepted.add((variant, service.verify(variant, REF).token_id))
        except TokenRejected as exc:
            assert exc.reason == "bad_signature"
    # The last base64 character carries spare bits, so several spellings verify: a burn-list keyed on the
    # token string could be replayed, one keyed on the jti cannot.
    assert {jti for _, jti in accepted} == {original}
    assert len(accepted) > 1


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ("", "malformed"),
        ("   ", "malformed"),
        ("not a token", "malformed"),
        ("é.é.é", "malformed"),
        ("abc/def", "malformed"),
        ("x" * (MAX_TOKEN_LENGTH + 1), "malformed"),
        (b"bytes.are.refused", "malformed"),
        (None, "malformed"),
        (".", "bad_signature"),
        ("a.b.c", "bad_signature"),
        ("x" * MAX_TOKEN_LENGTH, "bad_signature"),
        ("eyJ1aWQiOiJhbGljZSJ9", "bad_signature"),
        ("eyJ1aWQiOiJhbGljZSJ9.ZVTmAA.notasignature", "bad_signature"),
    ],
)
def test_garbage_tokens(service: TokenService, token: object, expected: str) -> None:
    assert reason(service, token) == expected


def test_oversized_token_is_refused_before_decoding(
    service: TokenService, monkeypatch: pytest.MonkeyPatch
) -> None:
    valid = service.mint(REF)
    monkeypatch.setattr(
        service._serializer, "loads", lambda *a, **k: pytest.fail("decoded an oversized token")
    )
    assert reason(service, valid + "A" * MAX_TOKEN_LENGTH) == "malformed"


@given(st.text(max_size=300))
def test_any_string_is_either_accepted_or_rejected_with_a_reason(text: str) -> None:
    service = TokenService(["key"], MAX_AGE, clock=FrozenClock(NOW))
    with pytest.raises(TokenRejected) as caught:
        service.verify(text, REF)
    assert caught.value.reason in {"malformed", "bad_signature", "bad_payload"}


class TestShorterLifetimes:
    """A shorter lifetime is the minted `exp` claim; the signing time stays honest."""

    @pytest.mark.parametrize("lifetime", [1, 60, MAX_AGE - 1, MAX_AGE])
    def test_expires_after_the_requested_lifetime(
        self, service: TokenService, clock: FrozenClock, lifetime: int
    ) -> None:
        clock.now = NOW
        token = service.mint(REF, max_age=lifetime)
        assert service.verify(token, REF).expires_at == NOW + lifetime  # not "future" right after minting
        clock.now = NOW + lifetime
        assert service.verify(token, REF).ref == REF
        clock.now = NOW + lifetime + 1
        assert reason(service, token) == "expired"

    @pytest.mark.parametrize("lifetime", [0, -1, MAX_AGE + 1, 10 * MAX_AGE, True, 1.5])
    def test_lifetime_out_of_range_is_refused(self, service: TokenService, lifetime: object) -> None:
        with pytest.raises(ValueError, match="max_age"):
            service.mint(REF, max_age=lifetime)  # type: ignore[arg-type]


def test_raising_the_lifetime_later_does_not_extend_a_minted_token(clock: FrozenClock) -> None:
    clock.now = NOW
    token = TokenService(["key-new"], MAX_AGE, clock=clock).mint(REF)
    clock.now = NOW + MAX_AGE + 1  # expired, and its burn-list entry may be purged by now
    assert reason(TokenService(["key-new"], 10 * MAX_AGE, clock=clock), token) == "expired"
    clock.now = NOW + 1
    assert TokenService(["key-new"], MAX_AGE // 2, clock=clock).verify(token, REF).expires_at == NOW + MAX_AGE // 2


def test_tokens_without_an_expiry_claim_use_the_lifetime(service: TokenService, clock: FrozenClock) -> None:
    """Tokens shaped as SPEC 4.3's payload (no `exp`) still verify, expiring max_age after signing."""
    clock.now = NOW
    assert service.verify(sign(payload()), REF).expires_at == NOW + MAX_AGE
    for bad in ("1", 1.5, True, [1]):
        assert reason(service, sign(payload(exp=bad))) == "bad_payload"


@pytest.mark.parametrize(
    ("keys", "max_age"),
    [([], MAX_AGE), ([""], MAX_AGE), (["k"], 0), (["k"], -5), (["k"], True)],
)
def test_service_configuration_is_checked(keys: list[str], max_age: int) -> None:
    with pytest.raises(ValueError):
        TokenService(keys, max_age)


def test_rejection_carries_its_reason() -> None:
    exc = TokenRejected("expired")
    assert exc.reason == "expired"
    assert str(exc) == "expired"


def test_offload_tickets(service: TokenService, clock: FrozenClock) -> None:
    """What nginx sends back when an offloaded transfer ends: signed, never a download token, good for the token's
    lifetime plus a grace (a slow transfer may end long after its token expired)."""
    clock.now = NOW
    token = service.mint(REF)
    claims = service.verify(token, REF)
    ticket = service.offload_ticket(claims.token_id, "a1b2c3", claims.expires_at)
    assert service.offload_report(ticket) == (claims.token_id, "a1b2c3", claims.expires_at)
    assert service.offload_report(token) is None  # a download token is not a ticket
    assert reason(service, ticket) in {"bad_signature", "bad_payload"}  # nor the reverse
    assert service.offload_report(ticket[:-2] + "AA") is None
    assert service.offload_report("") is None and service.offload_report("x" * 5000) is None
    assert TokenService(["another-key"], MAX_AGE, clock=clock).offload_report(ticket) is None
    clock.now = NOW + MAX_AGE + OFFLOAD_TICKET_GRACE
    assert service.offload_report(ticket) is not None
    clock.now = NOW + MAX_AGE + OFFLOAD_TICKET_GRACE + 1
    assert service.offload_report(ticket) is None  # expired
