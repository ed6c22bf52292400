"""Settings from the environment: defaults, parsing, and clear failures."""

from __future__ import annotations

import pytest

from app import create_app
from app.config import ConfigError, from_env


def test_defaults_live_under_var(tmp_path):
    settings = from_env({"PKGDL_SECRET_KEYS": "k"}, cwd=str(tmp_path))
    assert settings.storage_url == (tmp_path / "var" / "packages").as_uri()
    assert settings.burnlist_url == f"sqlite:///{tmp_path / 'var' / 'burnlist.sqlite3'}"
    assert settings.users_file == str(tmp_path / "var" / "users.toml")
    assert (settings.token_max_age, settings.public_url, settings.offload, settings.catalog_ttl) == \
        (86400, "http://127.0.0.1:8080", "none", 30.0)


@pytest.mark.parametrize("bind, public_url", [
    ("127.0.0.1:9090", "http://127.0.0.1:9090"),
    ("0.0.0.0:8000", "http://127.0.0.1:8000"),
    ("[::]:8081", "http://[::1]:8081"),
    ("[::1]:8082", "http://[::1]:8082"),
    ("dl.example.internal", "http://dl.example.internal:8000"),  # gunicorn's default port
    ("unix:/run/pkgdl.sock", "http://127.0.0.1:8080"),
    ("127.0.0.1:9091,127.0.0.1:9092", "http://127.0.0.1:9091"),
    ("tcp://0.0.0.0:8083", "http://127.0.0.1:8083"),
    ("dl.example.internal:", "http://dl.example.internal:8000"),
])
def test_public_url_defaults_to_the_bind_address(tmp_path, bind, public_url):
    assert from_env({"PKGDL_BIND": bind}, cwd=str(tmp_path)).public_url == public_url
    explicit = {"PKGDL_BIND": bind, "PKGDL_PUBLIC_URL": "https://dl.example.com/"}
    assert from_env(explicit, cwd=str(tmp_path)).public_url == "https://dl.example.com"


def test_keys_rotation_order_and_key_file(tmp_path):
    assert from_env({"PKGDL_SECRET_KEYS": "old, new"}, cwd=str(tmp_path)).secret_keys == ("old", "new")
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "secret_keys").write_text("first\n\nsecond\n")
    assert from_env({}, cwd=str(tmp_path)).secret_keys == ("first", "second")


@pytest.mark.parametrize("name, value, message", [
    ("PKGDL_TOKEN_MAX_AGE", "soon", "PKGDL_TOKEN_MAX_AGE"),
    ("PKGDL_TOKEN_MAX_AGE", "0", "PKGDL_TOKEN_MAX_AGE"),
    ("PKGDL_STORAGE_OPTIONS", "{not json", "PKGDL_STORAGE_OPTIONS"),
    ("PKGDL_STORAGE_OPTIONS", "[1]", "PKGDL_STORAGE_OPTIONS"),
    ("PKGDL_OFFLOAD", "sendfile", "PKGDL_OFFLOAD"),
    ("PKGDL_CATALOG_TTL", "-1", "PKGDL_CATALOG_TTL"),
    ("PKGDL_PUBLIC_URL", "dl.example.com", "PKGDL_PUBLIC_URL"),
])
def test_bad_values_fail_with_the_variable_named(tmp_path, name, value, message):
    with pytest.raises(ConfigError, match=message):
        from_env({"PKGDL_SECRET_KEYS": "k", name: value}, cwd=str(tmp_path))


def test_no_key_refuses_to_start(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("PKGDL_SECRET_KEYS", "PKGDL_STORAGE_URL", "PKGDL_BURNLIST_URL"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match="no signing key"):
        create_app()


def test_bad_storage_url_fails_at_start(settings):
    from dataclasses import replace
    with pytest.raises(ValueError):
        create_app(replace(settings, storage_url="nosuchfs://example/x"))
