"""The directory behind real gunicorn (2 workers) and the real CLI: sign-in, the per-worker cache counted in slapd's
log, a directory outage over HTTP (503 with Retry-After, links still downloading), no secret in any log, and the
operator's commands (users list LOGIN, users add refused, check)."""

from __future__ import annotations

import hashlib
import subprocess
import time
import xml.etree.ElementTree as ET

import pytest
import requests

from app.ldap_directory import FAIL_FAST_SECONDS
from deploy.ldap_server import PEOPLE
from deploy.processes import BIN
from tests.fixtures_ldap import LDAP_PASSWORDS, SERVICE_PASSWORD, ldap_env
from tests.fixtures_service import make_service


@pytest.fixture(scope="module")
def ldap_service(slapd, tmp_path_factory):
    """pkgdl on gunicorn with users from the directory (search then bind), alice's scan catalogued."""
    home = tmp_path_factory.mktemp("ldap-service")
    (home / "packages").mkdir()  # no users to seed: the directory has them
    service = make_service(home, ldap_env(slapd, "search"), seed=False)
    try:
        source = service.home / "bash-5.2.15-2.el9.x86_64.rpm"
        source.write_bytes(b"#!bash\n" * 40_000)
        service.files["bash"] = source
        added = service.cli("catalog", "add", "--uid", "alice", "--siid", "12", "--sid", "34", str(source))
        service.pids["bash"] = int(added.stdout.split("\t")[0])
        yield service
    finally:
        service.stop()


def auth(login: str, password: str | None = None) -> tuple[str, str]:
    return login, LDAP_PASSWORDS[login] if password is None else password


def test_a_burst_of_304s_binds_at_most_once_per_worker(ldap_service, slapd):
    url = ldap_service.bin_url(ldap_service.pids["bash"])
    before = slapd.binds(f"uid=alice,{PEOPLE}")
    with requests.Session() as first:
        response = first.get(url, auth=auth("alice"), timeout=10)
    assert response.status_code == 200 and response.content == ldap_service.files["bash"].read_bytes()
    etag = response.headers["ETag"]
    for _ in range(40):  # new connections: the requests spread over both workers
        answer = requests.get(url, auth=auth("alice"), headers={"If-None-Match": etag}, timeout=10)
        assert answer.status_code == 304
    slapd.settle()
    assert 1 <= slapd.binds(f"uid=alice,{PEOPLE}") - before <= 2


def test_directory_down_503_for_basic_links_still_download(ldap_service, slapd):
    base = ldap_service.base_url
    listing = requests.get(f"{base}/users/alice/scannedinstances/12/scans/34/packages", auth=auth("carol"),
                           timeout=10)
    assert listing.status_code == 200
    link = f'{base}/{ET.fromstring(listing.content).find(".//scannedPackage/binaryUri").text}'  # relative, as UForge
    slapd.stop()
    try:
        refused = requests.get(ldap_service.bin_url(ldap_service.pids["bash"]), auth=auth("dave"), timeout=20)
        assert refused.status_code == 503 and refused.headers["Retry-After"]
        assert "WWW-Authenticate" not in refused.headers
        assert refused.headers["Content-Type"] == "application/xml"
        download = requests.get(link, timeout=10)
        assert download.status_code == 200
        assert hashlib.sha256(download.content).hexdigest() == download.headers["ETag"].strip('"')
        ready = requests.get(f"{base}/readyz", timeout=20)
        assert ready.status_code == 200 and "directory: unavailable" in ready.text
    finally:
        slapd.start()
    time.sleep(FAIL_FAST_SECONDS + 0.1)  # sign-ins fail fast that long after an outage
    back = requests.get(ldap_service.bin_url(ldap_service.pids["bash"]), auth=auth("carol", "wrong"), timeout=10)
    assert back.status_code == 401


def test_no_password_or_bind_secret_in_any_log(ldap_service):
    requests.get(ldap_service.bin_url(ldap_service.pids["bash"]), auth=auth("alice", "a wrong guess"), timeout=10)
    time.sleep(0.3)
    logs = ldap_service.access_log.read_text() + ldap_service.error_log.read_text()
    for secret in ("a wrong guess", SERVICE_PASSWORD, *LDAP_PASSWORDS.values()):
        assert secret not in logs


def test_users_list_says_what_the_directory_gives_a_login(ldap_service):
    listed = ldap_service.cli("users", "list", "carol", "bob")
    assert listed.stdout.splitlines() == ["carol\tmigration_access,pkgdl_admins admin", "bob\tother_team,sneaky"]
    with pytest.raises(subprocess.CalledProcessError) as missing:
        ldap_service.cli("users", "list", "nobody")
    assert "no such user: nobody" in missing.value.stderr


def test_users_add_explains_that_the_directory_manages_users(ldap_service):
    with pytest.raises(subprocess.CalledProcessError) as refused:
        ldap_service.cli("users", "add", "zoe", "--password-stdin", stdin="pw\n")
    assert "users come from the directory" in refused.value.stderr
    assert "cn=migration_access" in refused.value.stderr
    assert not (ldap_service.home / "users.toml").exists()


def test_check_reports_the_directory_and_a_login(ldap_service, slapd):
    checked = ldap_service.cli("check", "--login", "bob")
    assert f"ok    directory ({slapd.url}; search" in checked.stdout
    assert "ok    user bob: other_team, sneaky (cannot download: needs migration_access)" in checked.stdout
    assert SERVICE_PASSWORD not in checked.stdout
    slapd.stop()
    try:
        with pytest.raises(subprocess.CalledProcessError) as failed:
            ldap_service.cli("check")
    finally:
        slapd.start()
    assert "FAIL  directory" in failed.value.stdout and "unreachable" in failed.value.stdout


def test_demo_with_the_directory_seeds_packages_but_no_user(ldap_service, tmp_path):
    env = {**ldap_service.env, "PKGDL_STORAGE_URL": (tmp_path / "packages").as_uri(),
           "PKGDL_USERS_FILE": str(tmp_path / "users.toml")}
    demo = subprocess.run([str(BIN / "pkgdl"), "demo"], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=60, check=True)
    assert "users come from the directory" in demo.stdout and "one-time:" in demo.stdout
    assert not (tmp_path / "users.toml").exists()
