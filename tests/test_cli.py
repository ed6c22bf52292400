"""The pkgdl command through click's runner, on the same environment variables as the service."""

from __future__ import annotations

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


def test_token_mint_prints_a_full_link(env):
    result = run("token", "mint", "--uid", "alice", "--siid", "1", "--sid", "2", "--pid", "3")
    url = urlsplit(result.output.strip())
    assert (url.scheme, url.netloc, url.path) == ("https", "dl.example.test",
                                                 "/users/alice/scannedinstances/1/scans/2/packages/3/bin")
    token = parse_qs(url.query)["downloadToken"][0]
    assert TokenService(["cli-key"], 86400).verify(token, PackageRef("alice", 1, 2, 3)).token_id


def test_token_mint_refuses_a_longer_max_age(env):
    result = run("token", "mint", "--uid", "a", "--siid", "1", "--sid", "2", "--pid", "3", "--max-age", "999999")
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


def test_demo_seeds_and_is_idempotent(env, tmp_path, monkeypatch):
    monkeypatch.delenv("PKGDL_SECRET_KEYS")
    first = run("demo")
    assert first.exit_code == 0, first.output
    assert (tmp_path / "var" / "secret_keys").exists()
    second = run("demo")
    assert second.output.splitlines()[1] == first.output.splitlines()[1]  # same password line
