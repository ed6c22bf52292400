"""The pkgdl command through click's runner, on the same environment variables as the service."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from click.testing import CliRunner

from app.cli import cli
from app.tokens import PackageRef, TokenService
from app.users import Authenticator, UserDirectory, load_users


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    values = {
        "PKGDL_STORAGE_URL": (tmp_path / "packages").as_uri(),
        "PKGDL_USERS_FILE": str(tmp_path / "users.toml"),
        "PKGDL_BURNLIST_URL": f"sqlite:///{tmp_path / 'burn.sqlite3'}",
        "PKGDL_SECRET_KEYS": "cli-key",
        "PKGDL_PUBLIC_URL": "https://dl.example.test/",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


@pytest.fixture
def catalogued(env, tmp_path):
    """alice's scan 1/2 holds one package, pid 1 (links are minted only for catalogued packages)."""
    rpm = tmp_path / "zlib-1.2.11-40.el9.x86_64.rpm"
    rpm.write_bytes(b"not really an rpm")
    assert run("catalog", "add", "--uid", "alice", "--siid", "1", "--sid", "2", str(rpm)).exit_code == 0
    return env


def run(*args: str, stdin: str | None = None):
    return CliRunner().invoke(cli, list(args), input=stdin, catch_exceptions=False)


def test_users_add_list_remove(env):
    assert run("users", "add", "alice", "--password-stdin", stdin="secret pw\n").exit_code == 0
    assert run("users", "add", "root", "--admin", "--entitlement", "migration_access", "--password-stdin",
               stdin="x\n").exit_code == 0
    directory = UserDirectory(env["PKGDL_USERS_FILE"])
    assert Authenticator(directory).authenticate("alice", "secret pw")  # exactly one trailing newline stripped
    assert run("users", "list").output.splitlines() == ["alice\tmigration_access", "root\tmigration_access admin"]
    assert run("users", "remove", "alice").exit_code == 0
    assert set(load_users(directory.path)) == {"root"}
    assert run("users", "remove", "alice").exit_code != 0


def test_users_add_rejects_bad_login(env):
    result = run("users", "add", "../evil", "--password-stdin", stdin="x\n")
    assert result.exit_code != 0 and "must match" in result.output


def test_catalog_add_and_list(env, tmp_path):
    rpm = tmp_path / "zlib-1.2.11-40.el9.x86_64.rpm"
    rpm.write_bytes(b"not really an rpm")
    added = run("catalog", "add", "--uid", "alice", "--siid", "1", "--sid", "2", str(rpm))
    assert added.output == "1\tzlib-1.2.11-40.el9.x86_64.rpm\n"
    listed = run("catalog", "list", "--uid", "alice", "--siid", "1", "--sid", "2").output
    assert listed.startswith("1\tzlib-1.2.11-40.el9.x86_64.rpm\t17\t")


def test_token_mint_prints_a_full_link(catalogued, env):
    result = run("token", "mint", "--uid", "alice", "--siid", "1", "--sid", "2", "--pid", "1")
    url = urlsplit(result.output.strip())
    assert (url.scheme, url.netloc, url.path) == ("https", "dl.example.test",
                                                 "/users/alice/scannedinstances/1/scans/2/packages/1/bin")
    token = parse_qs(url.query)["downloadToken"][0]
    assert TokenService(["cli-key"], 86400).verify(token, PackageRef("alice", 1, 2, 1)).token_id


def _status(link: str) -> dict[str, str]:
    result = run("token", "status", link)
    assert result.exit_code == 0, result.output
    return {line[:14].strip(): line[14:] for line in result.output.splitlines()}


def test_token_status_and_revoke_follow_a_link(catalogued, env):
    """unused -> claimed (a broken transfer: bytes and coverage shown) -> revoked, by URL or bare token."""
    from app.burnlist import open_burnlist
    from app.link_ledger import LinkLedger

    link = run("token", "mint", "--uid", "alice", "--siid", "1", "--sid", "2", "--pid", "1").output.strip()
    token = parse_qs(urlsplit(link).query)["downloadToken"][0]
    status = _status(link)
    assert status["state"] == "unused" and status["package"] == "users/alice/scannedinstances/1/scans/2/packages/1"
    claims = TokenService(["cli-key"], 86400).verify(token, PackageRef("alice", 1, 2, 1))
    ledger = LinkLedger(open_burnlist(env["PKGDL_BURNLIST_URL"]), 3600)
    grant = ledger.admit(claims, etag="ab" * 32, size=1000, ranged=False, planned=1000)
    grant.reserve(600)
    grant.settle(((0, 400),), completed=False)
    status = _status(token)
    assert status["state"] == "claimed"
    assert status["sent"].startswith("600 bytes (budget 2000) in 1 request")
    assert status["covered"] == "0-399 of 1000 bytes"
    assert run("token", "revoke", link).exit_code == 0
    assert _status(link)["state"] == "revoked"


def test_token_status_says_why_a_link_is_spent(catalogued, env):
    from app.burnlist import open_burnlist
    from app.link_ledger import LinkLedger

    link = run("token", "mint", "--uid", "alice", "--siid", "1", "--sid", "2", "--pid", "1").output.strip()
    claims = TokenService(["cli-key"], 86400).verify(parse_qs(urlsplit(link).query)["downloadToken"][0],
                                                     PackageRef("alice", 1, 2, 1))
    grant = LinkLedger(open_burnlist(env["PKGDL_BURNLIST_URL"]), 3600).admit(
        claims, etag="ab" * 32, size=10, ranged=False, planned=10)
    grant.reserve(10)
    grant.settle(((0, 10),), completed=True)
    status = _status(link)
    assert status["state"] == "spent" and status["spent because"] == "every byte was delivered"


@pytest.mark.parametrize("argument, message", [
    ("abc.def.ghi", "not a genuine link"),
    ("https://dl.example.test/x?y=1", "no single downloadToken"),
])
def test_token_status_refuses_what_is_not_a_link(env, argument, message):
    for command in ("status", "revoke"):
        result = run("token", command, argument)
        assert result.exit_code == 1 and message in result.output


def test_a_link_revoked_before_use_never_downloads(catalogued, env):
    link = run("token", "mint", "--uid", "alice", "--siid", "1", "--sid", "2", "--pid", "1").output.strip()
    other = TokenService(["another-key"], 3600).mint(PackageRef("alice", 1, 2, 1))
    assert run("token", "revoke", other).exit_code == 1  # another service's link: nothing written
    assert run("token", "revoke", link).exit_code == 0
    assert run("token", "revoke", link).exit_code == 0  # again: still revoked, once
    assert _status(link)["state"] == "revoked"


@pytest.mark.parametrize("scan, pid, says", [
    ("2", "2", "no package 2 in scan alice/1/2"),
    ("9", "1", "no scan alice/1/9"),
])
def test_token_mint_refuses_a_package_not_in_the_catalog(catalogued, scan, pid, says):
    result = CliRunner().invoke(cli, ["token", "mint", "--uid", "alice", "--siid", "1", "--sid", scan, "--pid", pid])
    assert result.exit_code == 1 and says in result.stderr and result.stdout == ""


def test_catalog_add_warns_about_names_it_cannot_read(env, tmp_path):
    odd = tmp_path / "foo.rpm"
    odd.write_bytes(b"x")
    result = CliRunner().invoke(cli, ["catalog", "add", "--uid", "alice", "--siid", "1", "--sid", "3", str(odd)])
    assert result.exit_code == 0 and result.stdout == "1\tfoo.rpm\n"
    assert "warning: foo.rpm: could not work out version, release, arch" in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_token_mint_refuses_a_longer_max_age(catalogued, env):
    result = run("token", "mint", "--uid", "alice", "--siid", "1", "--sid", "2", "--pid", "1", "--max-age", "999999")
    assert result.exit_code != 0


def test_burnlist_purge_and_check(env):
    assert "expired entries removed" in run("burnlist", "purge").output
    failing = run("check")
    assert failing.exit_code == 1
    assert "FAIL  users file" in failing.output and "FAIL  storage" in failing.output
    run("users", "add", "alice", "--password-stdin", stdin="pw\n")
    Path(env["PKGDL_STORAGE_URL"].removeprefix("file://")).mkdir()
    result = run("check")
    assert result.exit_code == 0, result.output
    assert "ok    user alice: migration_access\n" in run("check", "--login", "alice").output
    missing = run("check", "--login", "Alice")
    assert missing.exit_code == 1 and "FAIL  user Alice: not found: no user Alice" in missing.output
    assert run("users", "list", "alice").output == "alice\tmigration_access\n"
    assert run("users", "list", "nobody").exit_code == 1


def test_demo_seeds_and_is_idempotent(env, tmp_path, monkeypatch):
    monkeypatch.delenv("PKGDL_SECRET_KEYS")
    first = run("demo")
    assert first.exit_code == 0, first.output
    assert (tmp_path / "var" / "secret_keys").exists()
    second = run("demo")
    assert second.output.splitlines()[1] == first.output.splitlines()[1]  # same password line


def test_catalog_list_prints_a_tolerated_name_on_one_line(env, tmp_path):
    rpm = tmp_path / "a-1-1.noarch.rpm"
    rpm.write_bytes(b"a")
    run("catalog", "add", "--uid", "alice", "--siid", "1", "--sid", "2", str(rpm))
    manifest = tmp_path / "packages" / "alice" / "1" / "2" / "packages.json"
    document = json.loads(manifest.read_text())
    document["packages"][0]["fullName"] = "bad\ud800\tname\n.rpm"
    manifest.write_text(json.dumps(document))
    listed = CliRunner().invoke(cli, ["catalog", "list", "--uid", "alice", "--siid", "1", "--sid", "2"])
    assert listed.exit_code == 0 and listed.stdout.startswith("1\tbadname.rpm\t1\t")
    assert len(listed.stdout.splitlines()) == 1


def test_unusable_manifest_entries_are_named_by_list_check_and_add(env, tmp_path):
    first, second = tmp_path / "a-1-1.noarch.rpm", tmp_path / "b-1-1.noarch.rpm"
    first.write_bytes(b"a")
    second.write_bytes(b"b")
    run("catalog", "add", "--uid", "alice", "--siid", "1", "--sid", "2", str(first), str(second))
    manifest = tmp_path / "packages" / "alice" / "1" / "2" / "packages.json"
    document = json.loads(manifest.read_text())
    del document["packages"][0]["sha256sum"]
    manifest.write_text(json.dumps(document))

    listed = CliRunner().invoke(cli, ["catalog", "list", "--uid", "alice", "--siid", "1", "--sid", "2"])
    assert listed.exit_code == 0
    assert listed.stdout.startswith("2\tb-1-1.noarch.rpm\t1\t") and "a-1-1" not in listed.stdout
    assert "unusable entry packages[0] (dbId 1): sha256sum" in listed.stderr

    checked = run("check", "--uid", "alice", "--siid", "1", "--sid", "2")
    assert checked.exit_code == 1
    assert "FAIL  scan alice/1/2 (" in checked.output
    assert "invalid: unusable entries: packages[0] (dbId 1): sha256sum" in checked.output
    assert "Traceback" not in checked.output
    assert run("check", "--uid", "alice").exit_code == 2  # the three options go together

    third = tmp_path / "c-1-1.noarch.rpm"
    third.write_bytes(b"c")
    refused = run("catalog", "add", "--uid", "alice", "--siid", "1", "--sid", "2", str(third))
    assert refused.exit_code == 1 and "unusable entries" in refused.output
    assert json.loads(manifest.read_text()) == document  # nothing rewritten, nothing dropped


@pytest.mark.parametrize("args, extra_env, says", [
    (["catalog", "list", "--uid", "a", "--siid", "1", "--sid", "2"],
     {"PKGDL_STORAGE_URL": "http://127.0.0.1:9/root"}, "unreachable"),
    (["catalog", "add", "--uid", "a", "--siid", "1", "--sid", "2", __file__],
     {"PKGDL_STORAGE_URL": "s3://bucket/x", "PKGDL_BURNLIST_URL": "redis://:hunter2@127.0.0.1:9/0",
      "PKGDL_STORAGE_OPTIONS": '{"endpoint_url": "http://127.0.0.1:9", "key": "k", "secret": "s3cr3t",'
                               ' "config_kwargs": {"connect_timeout": 1, "retries": {"max_attempts": 1}}}'},
     "unreachable"),
    (["catalog", "list", "--uid", "a", "--siid", "1", "--sid", "99"], {}, "no scan a/1/99"),
])
def test_operational_failures_are_one_line_without_traceback(env, tmp_path, args, extra_env, says):
    """Run as a real subprocess: standard error is one line, the exit code 1, no secret shown."""
    (tmp_path / "packages").mkdir(exist_ok=True)  # the root exists: the missing one is the scan
    environment = {**os.environ, **env, **extra_env}
    done = subprocess.run([sys.executable, "-m", "app.cli", *args], env=environment, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], done.stderr
    assert "Traceback" not in done.stderr and "hunter2" not in done.stderr and "s3cr3t" not in done.stderr


def test_help_lists_our_commands_only():
    names = set(run("--help").output.split("Commands:")[1].split())
    assert {"users", "catalog", "token", "burnlist", "check", "demo"} <= names
    assert not {"run", "shell", "routes"} & names  # Flask's development server logs query strings (tokens)


def test_check_names_the_extra_a_storage_url_needs(env, monkeypatch):
    import fsspec

    real = fsspec.get_filesystem_class

    def without_gcsfs(protocol):
        if protocol in ("gs", "gcs"):
            raise ImportError("Install gcsfs to access Google Storage")
        return real(protocol)

    monkeypatch.setattr(fsspec, "get_filesystem_class", without_gcsfs)
    monkeypatch.setenv("PKGDL_STORAGE_URL", "gs://bucket/packages")
    result = run("check")
    line = next(line for line in result.output.splitlines() if line.startswith("FAIL  storage"))
    assert line == ("FAIL  storage (gs://bucket/packages): invalid: storage URL scheme 'gs' needs its fsspec "
                    "implementation: pip install 'pkgdl[gcs]'; see README, Storage backends")
