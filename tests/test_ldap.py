"""Users from a real directory (slapd, tests/fixtures_ldap.py) through the app: direct bind and search then bind,
entitlements from groups, hostile logins, the cache, StartTLS, and a directory that is stopped, paused or refuses
the service account (503 with Retry-After, never 401; links keep working)."""

from __future__ import annotations

import base64
import hashlib
import logging
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest

from app import create_app
from app.ldap_directory import DirectoryUnavailable, LdapDirectory
from app.tokens import PackageRef
from deploy.ldap_server import PEOPLE, running_slapd
from deploy.tls import demo_certificate
from tests.fixtures_ldap import LDAP_PASSWORDS, LDAP_PEOPLE, SERVICE_PASSWORD, ldap_settings

MODES = ("direct", "search")


def basic(login: str, password: str | None = None) -> dict[str, str]:
    password = LDAP_PASSWORDS.get(login, "x") if password is None else password
    raw = f"{login}:{password}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


@pytest.fixture(params=MODES)
def ldap_app(request, slapd, settings, storage, scan):
    """The app with users from the directory, found one way or the other."""
    return create_app(replace(settings, auth_backend="ldap", ldap=ldap_settings(slapd, request.param)),
                      storage=storage)


def fresh_app(slapd, settings, storage, mode: str = "direct", attempts: int = 10, **extra: str):
    """A new app: nothing remembered, so every sign-in asks the directory."""
    return create_app(replace(settings, auth_backend="ldap", ldap=ldap_settings(slapd, mode, **extra),
                              login_attempts_per_minute=attempts), storage=storage)


def token_for(app, scan, pid: int) -> str:
    return app.extensions["pkgdl"].tokens.mint(PackageRef(scan.uid, scan.siid, scan.sid, pid))


# ---- who gets what ----------------------------------------------------------------------------------------------
def test_entitled_user_downloads_and_lists(ldap_app, scan):
    client = ldap_app.test_client()
    response = client.get(scan.bin_path(1), headers=basic("alice"))
    assert response.status_code == 200
    assert response.data == scan.blobs[1]
    listing = client.get(scan.listing_path(), headers=basic("alice"))
    assert listing.status_code == 200
    assert b"<total>3</total>" in listing.data


def test_user_without_the_entitlement_gets_403(ldap_app, scan):
    response = ldap_app.test_client().get(scan.bin_path(1), headers=basic("bob"))
    assert response.status_code == 403


def test_admin_group_reads_other_users_scans(ldap_app, scan):
    """carol is in migration_access and in pkgdl_admins (a groupOfUniqueNames: uniqueMember)."""
    response = ldap_app.test_client().get(scan.bin_path(2), headers=basic("carol"))
    assert response.status_code == 200
    assert response.data == scan.blobs[2]


@pytest.mark.parametrize("mode", MODES)
def test_entitlements_are_the_cns_of_groups_under_the_base(slapd, mode):
    directory = LdapDirectory(ldap_settings(slapd, mode))
    alice = directory.verify("alice", LDAP_PASSWORDS["alice"])
    assert alice is not None and alice.entitlements == {"migration_access"} and not alice.admin
    carol = directory.verify("carol", LDAP_PASSWORDS["carol"])
    assert carol.entitlements == {"migration_access", "pkgdl_admins"} and carol.admin
    bob = directory.verify("bob", LDAP_PASSWORDS["bob"])
    # bob's groups: other_team, and sneaky whose other cn values (pkgdl_admins, migration_access) are not its name;
    # a group cn=migration_access in a sub-OU of the base does not count either.
    assert bob.entitlements == {"other_team", "sneaky"} and not bob.may_read("bob")
    # memberOf (Active Directory's way), the group's cn compared as LDAP does: case-insensitively.
    assert directory.verify("dave", LDAP_PASSWORDS["dave"]).entitlements == {"migration_access"}
    # A memberOf naming a group outside the group base grants nothing, nor one named cn=x+ou=groups one level up.
    assert directory.verify("frank", LDAP_PASSWORDS["frank"]).entitlements == frozenset()
    assert not bob.admin


@pytest.mark.parametrize("mode", MODES)
def test_the_login_must_be_the_entrys_one_login_spelled_so(slapd, mode):
    """A directory matches names without regard to case, and an entry may hold several uids: ALICE would be
    another pkgdl uid with its own throttle allowance, and one password would speak for two uids."""
    directory = LdapDirectory(ldap_settings(slapd, mode))
    assert directory.verify("ALICE", LDAP_PASSWORDS["alice"]) is None
    assert directory.verify("Alice", LDAP_PASSWORDS["alice"]) is None
    assert directory.verify("victim", LDAP_PASSWORDS["grace"]) is None
    assert directory.verify("grace", LDAP_PASSWORDS["grace"]) is None  # which of her two uids? neither
    assert directory.lookup("ALICE") is None


@pytest.mark.parametrize("mode", MODES)
def test_a_password_is_sent_as_its_bytes(slapd, mode):
    """No SASLprep on our side: a tab or a control character is the user's password, not a 503."""
    henry = LdapDirectory(ldap_settings(slapd, mode)).verify("henry", LDAP_PASSWORDS["henry"])
    assert henry is not None and henry.may_read("henry")


def test_a_filter_matching_several_entries_refuses_the_login(slapd):
    directory = LdapDirectory(ldap_settings(slapd, "search", USER_FILTER="(|(uid={login})(uid=bob))"))
    assert directory.verify("alice", LDAP_PASSWORDS["alice"]) is None
    assert directory.verify("bob", LDAP_PASSWORDS["bob"]) is not None  # one entry: fine


def test_unknown_and_known_logins_cost_the_same_operations(slapd):
    """Search then bind: a wrong password and an unknown login make the same binds and searches (the unknown one
    binds as a DN that does not exist), so timing tells neither apart."""
    directory = LdapDirectory(ldap_settings(slapd, "search"))

    def operations(login: str) -> list[str]:
        before = len(slapd.operations())
        assert directory.verify(login, "wrong password") is None
        slapd.settle()
        return [op for line in slapd.operations()[before:].splitlines()
                for op in ("BIND", "SRCH", "RESULT") if f" {op} " in line]

    assert operations("alice") == operations("nobody")


@pytest.mark.parametrize("mode", MODES)
def test_admin_group_is_configurable(slapd, mode):
    directory = LdapDirectory(ldap_settings(slapd, mode, ADMIN_GROUP="other_team"))
    assert directory.verify("bob", LDAP_PASSWORDS["bob"]).admin
    assert not directory.verify("carol", LDAP_PASSWORDS["carol"]).admin


def test_wrong_password_and_unknown_user_get_the_same_401(ldap_app, scan):
    client = ldap_app.test_client()
    wrong = client.get(scan.bin_path(1), headers=basic("alice", "not her password"))
    unknown = client.get(scan.bin_path(1), headers=basic("nobody", "whatever"))
    for response in (wrong, unknown):
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == 'Basic realm="pkgdl", charset="UTF-8"'
    strip = lambda body: body.split(b"<timestamp>")[0]  # noqa: E731
    assert strip(wrong.data) == strip(unknown.data)


@pytest.mark.parametrize("mode", MODES)
def test_an_empty_password_never_binds(slapd, settings, storage, scan, mode):
    """An empty password is an unauthenticated bind (RFC 4513 5.1.2), which directories may accept as anonymous."""
    before = slapd.operations()
    response = fresh_app(slapd, settings, storage, mode).test_client().get(scan.bin_path(1), headers=basic("alice", ""))
    assert response.status_code == 401
    assert "alice" not in slapd.operations()[len(before):]


HOSTILE_LOGINS = ["*", "a*", "alice*", "(", ")", "\\", "al\0ice", "alice,ou=x", "uid=alice", "alice)(uid=*",
                  "*)(|(uid=*", "élise", "alice ", " alice", "#alice", "ali+ce", "al<i>ce", 'al"ice', "al;ice"]


@pytest.mark.parametrize("mode", MODES)
def test_hostile_logins_never_reach_the_directory(slapd, settings, storage, scan, mode):
    """Each is a 401, and slapd sees no bind or search for any of them: nothing can change a DN or a filter."""
    client = fresh_app(slapd, settings, storage, mode, attempts=1000).test_client()
    before = len(slapd.operations())
    for login in HOSTILE_LOGINS:
        response = client.get(scan.bin_path(1), headers=basic(login, LDAP_PASSWORDS["alice"]))
        assert response.status_code == 401, login
    time.sleep(0.3)  # slapd writes its log line after answering
    assert "alice" not in slapd.operations()[before:]
    assert "BIND" not in slapd.operations()[before:] and "SRCH" not in slapd.operations()[before:]


def test_failed_logins_are_throttled(slapd, settings, storage, scan):
    client = fresh_app(slapd, settings, storage).test_client()
    statuses = [client.get(scan.bin_path(1), headers=basic("alice", f"guess {n}")).status_code for n in range(12)]
    assert statuses[:10] == [401] * 10
    assert statuses[-1] == 429


# ---- the cache ----------------------------------------------------------------------------------------------------
def test_remembered_credentials_skip_the_directory(slapd, settings, storage, scan):
    """A burst of 304s costs one bind: the credentials are remembered (per worker, for the cache's TTL)."""
    client = fresh_app(slapd, settings, storage).test_client()
    binds_before = slapd.binds(f"uid=alice,{PEOPLE}")
    etag = client.get(scan.bin_path(1), headers=basic("alice")).headers["ETag"]
    for _ in range(30):
        assert client.get(scan.bin_path(1), headers={**basic("alice"), "If-None-Match": etag}).status_code == 304
    slapd.settle()  # slapd writes its log line after answering
    assert slapd.binds(f"uid=alice,{PEOPLE}") - binds_before == 1


def test_concurrent_sign_ins_bind_once(slapd, settings, storage, scan):
    """Eight requests with the same new credentials at once (a migration client's connections) bind once: slapd is
    paused while they arrive, so all of them are waiting on the directory together. The first one's bind waits
    for slapd: a timeout of 5 s (the tests' 1 s could run out on a loaded machine while slapd is paused)."""
    app = fresh_app(slapd, settings, storage, TIMEOUT="5")
    binds_before = slapd.binds(f"uid=alice,{PEOPLE}")
    with ThreadPoolExecutor(max_workers=8) as pool:
        with slapd.paused():
            answers = [pool.submit(lambda: app.test_client().get(scan.bin_path(1), headers=basic("alice")))
                       for _ in range(8)]
            time.sleep(0.5)
        assert [answer.result(timeout=30).status_code for answer in answers] == [200] * 8
    slapd.settle()  # slapd writes its log line after answering
    assert slapd.binds(f"uid=alice,{PEOPLE}") - binds_before == 1


# ---- the directory down -------------------------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def short_fail_fast(monkeypatch):
    """Sign-ins fail fast for FAIL_FAST_SECONDS after an outage: short here, so the tests see the directory back."""
    monkeypatch.setattr("app.ldap_directory.FAIL_FAST_SECONDS", 0.5)


def after_fail_fast() -> None:
    time.sleep(0.6)


def test_directory_stopped_gives_503_not_401_and_links_keep_working(slapd, settings, storage, scan):
    app = fresh_app(slapd, settings, storage)
    client = app.test_client()
    assert client.get(scan.bin_path(1), headers=basic("alice")).status_code == 200  # remembered from now on
    token = token_for(app, scan, 2)
    slapd.stop()
    try:
        uncached = client.get(scan.bin_path(1), headers=basic("carol"))
        assert uncached.status_code == 503
        assert uncached.headers["Retry-After"]
        assert "WWW-Authenticate" not in uncached.headers
        assert b"signInUnavailable" in uncached.data
        assert client.get(scan.bin_path(1), headers=basic("alice")).status_code == 200  # remembered
        assert client.get(f"{scan.bin_path(2)}?downloadToken={token}").data == scan.blobs[2]
        # Credentials plus a link: the link decides, as when the credentials are throttled.
        other = token_for(app, scan, 3)
        assert client.get(f"{scan.bin_path(3)}?downloadToken={other}", headers=basic("carol")).status_code == 200
        # Failures while it is down are not counted as guesses.
        for _ in range(12):
            assert client.get(scan.bin_path(1), headers=basic("carol", "wrong")).status_code == 503
        ready = client.get("/readyz")
        assert ready.status_code == 200 and b"directory: unavailable" in ready.data
    finally:
        slapd.start()
    after_fail_fast()
    assert client.get(scan.bin_path(1), headers=basic("carol")).status_code == 200
    assert b"directory: ok" in client.get("/readyz").data


@pytest.mark.parametrize("mode", MODES)
def test_directory_paused_gives_503_within_the_timeout(slapd, settings, storage, scan, mode):
    client = fresh_app(slapd, settings, storage, mode).test_client()
    with slapd.paused():
        started = time.monotonic()
        response = client.get(scan.bin_path(1), headers=basic("alice"))
        waited = time.monotonic() - started
    assert response.status_code == 503 and response.headers["Retry-After"]
    assert waited < 5  # PKGDL_LDAP_TIMEOUT=1 per step
    after_fail_fast()
    assert client.get(scan.bin_path(1), headers=basic("alice")).status_code == 200


def test_a_silent_directory_holds_one_request_not_every_one(slapd, settings, storage, scan):
    """After one sign-in waited for the timeout, the next ones (a UForge SDK's "None:None" beside a link
    included) get their answer at once, and /readyz answers within its probe's time."""
    app = fresh_app(slapd, settings, storage, TIMEOUT="4")
    client = app.test_client()
    token = token_for(app, scan, 2)
    with slapd.paused():
        assert client.get(scan.bin_path(1), headers=basic("alice")).status_code == 503  # waits the timeout
        started = time.monotonic()
        assert client.get(scan.bin_path(1), headers=basic("carol")).status_code == 503
        link = client.get(f"{scan.bin_path(2)}?downloadToken={token}", headers=basic("None", "None"))
        quick = time.monotonic() - started
        assert link.status_code == 200 and link.data == scan.blobs[2]
        after_fail_fast()
        started = time.monotonic()
        ready = client.get("/readyz")
        probe = time.monotonic() - started
    assert ready.status_code == 200 and b"directory: unavailable" in ready.data
    assert quick < 1  # no timeout waited (the first request waited 4 s)
    assert probe < 3  # a 1 s connect and a 1 s answer at most, whatever PKGDL_LDAP_TIMEOUT is


def test_a_refused_service_account_is_503_not_401(slapd, settings, storage, scan, caplog):
    client = fresh_app(slapd, settings, storage, "search", BIND_PASSWORD="not the service password").test_client()
    with caplog.at_level(logging.WARNING):
        response = client.get(scan.bin_path(1), headers=basic("alice"))
    assert response.status_code == 503
    assert "service account" in caplog.text
    assert "not the service password" not in caplog.text and LDAP_PASSWORDS["alice"] not in caplog.text


def test_no_password_reaches_a_log_or_a_body(slapd, settings, storage, scan, caplog):
    client = fresh_app(slapd, settings, storage, "search").test_client()
    with caplog.at_level(logging.DEBUG):
        bodies = [client.get(scan.bin_path(1), headers=basic("alice", "a secret guess")).data]
        slapd.stop()
        try:
            bodies.append(client.get(scan.bin_path(1), headers=basic("alice")).data)
        finally:
            slapd.start()
    for secret in ("a secret guess", LDAP_PASSWORDS["alice"], SERVICE_PASSWORD):
        assert secret not in caplog.text
        assert all(secret.encode() not in body for body in bodies)


# ---- TLS ----------------------------------------------------------------------------------------------------------
def test_starttls_with_the_test_ca(slapd, settings, storage, scan):
    ca = str(slapd.tls[0])
    client = fresh_app(slapd, settings, storage, STARTTLS="1", CA_FILE=ca).test_client()
    assert client.get(scan.bin_path(1), headers=basic("alice")).data == scan.blobs[1]
    assert "STARTTLS" in slapd.operations()


def test_ldaps_with_the_test_ca(slapd, settings, storage, scan):
    client = fresh_app(slapd, settings, storage, "search", URL=slapd.ldaps_url, CA_FILE=str(slapd.tls[0])).test_client()
    assert client.get(scan.bin_path(1), headers=basic("alice")).data == scan.blobs[1]


def test_starttls_with_a_certificate_we_do_not_trust_is_503(slapd, settings, storage, scan, tmp_path):
    stranger, _ = demo_certificate(tmp_path / "other-ca")
    client = fresh_app(slapd, settings, storage, STARTTLS="1", CA_FILE=str(stranger)).test_client()
    assert client.get(scan.bin_path(1), headers=basic("alice")).status_code == 503
    ldaps = fresh_app(slapd, settings, storage, URL=slapd.ldaps_url, CA_FILE=str(stranger)).test_client()
    assert ldaps.get(scan.bin_path(1), headers=basic("alice")).status_code == 503


def test_a_certificate_for_another_name_is_503(slapd, settings, storage, scan, tmp_path):
    """The CA is trusted but the certificate names another host: ldap3 checks the name (RFC 6125), so no bind."""
    certificate, key = tmp_path / "other.crt", tmp_path / "other.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-days", "2", "-subj", "/CN=other.example", "-keyout", str(key), "-out", str(certificate),
                    "-addext", "subjectAltName=DNS:other.example", "-addext", "basicConstraints=critical,CA:TRUE"],
                   check=True, capture_output=True, timeout=60)
    with running_slapd(tmp_path / "other", LDAP_PEOPLE[:1], tls=(certificate, key)) as other:
        client = fresh_app(other, settings, storage, URL=other.ldaps_url, CA_FILE=str(certificate)).test_client()
        assert client.get(scan.bin_path(1), headers=basic("alice")).status_code == 503
        assert "BIND" not in other.operations()


# ---- lookups for operators --------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_lookup_needs_no_password(slapd, mode):
    directory = LdapDirectory(ldap_settings(slapd, mode))
    carol = directory.lookup("carol")
    assert carol.entitlements == {"migration_access", "pkgdl_admins"} and carol.admin
    assert directory.lookup("nobody") is None
    assert directory.lookup("*") is None


def test_ping_and_lookup_raise_when_the_directory_is_down(slapd):
    directory = LdapDirectory(ldap_settings(slapd, "search"))
    directory.ping()
    slapd.stop()
    try:
        with pytest.raises(DirectoryUnavailable):
            directory.ping()
        with pytest.raises(DirectoryUnavailable):
            directory.lookup("alice")
    finally:
        slapd.start()


def test_the_digest_of_a_download_is_the_same_as_with_the_users_file(ldap_app, scan):
    """Nothing but who may sign in changes: the headers of a download are those of the file backend."""
    response = ldap_app.test_client().get(scan.bin_path(1), headers=basic("alice"))
    assert response.headers["ETag"] == f'"{hashlib.sha256(scan.blobs[1]).hexdigest()}"'
    assert response.headers["Vary"] == "Authorization"
