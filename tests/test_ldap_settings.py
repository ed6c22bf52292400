"""PKGDL_AUTH_BACKEND=ldap without a directory: the settings' checks and the escaping of logins (RFC 4514, 4515)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from ldap3.utils.dn import parse_dn

from app.config import ConfigError, from_env
from app.ldap_directory import acceptable_login, escape_dn_value, escape_filter_value

DIRECT = {"PKGDL_AUTH_BACKEND": "ldap", "PKGDL_LDAP_URL": "ldap://dir.example.org",
          "PKGDL_LDAP_USER_DN": "uid={login},ou=people,dc=example,dc=org",
          "PKGDL_LDAP_GROUP_BASE": "ou=groups,dc=example,dc=org"}
SEARCH = {"PKGDL_AUTH_BACKEND": "ldap", "PKGDL_LDAP_URL": "ldaps://dc1.corp.example:636",
          "PKGDL_LDAP_BIND_DN": "CN=svc-pkgdl,OU=Service,DC=corp,DC=example", "PKGDL_LDAP_BIND_PASSWORD": "s3cret pw",
          "PKGDL_LDAP_USER_BASE": "OU=Staff,DC=corp,DC=example", "PKGDL_LDAP_USER_FILTER": "(sAMAccountName={login})",
          "PKGDL_LDAP_GROUP_BASE": "OU=Groups,DC=corp,DC=example"}


def settings_of(env: dict[str, str]):
    return from_env(env, cwd="/nonexistent")


def test_the_users_file_stays_the_default():
    settings = settings_of({})
    assert settings.auth_backend == "file" and settings.ldap is None


def test_direct_bind_and_search_then_bind_are_read():
    direct = settings_of(DIRECT).ldap
    assert direct.direct_bind and direct.admin_group == "pkgdl_admins" and direct.timeout == 5
    search = settings_of(SEARCH | {"PKGDL_LDAP_ADMIN_GROUP": "Domain pkgdl admins", "PKGDL_LDAP_TIMEOUT": "2"}).ldap
    assert not search.direct_bind and search.bind_password == "s3cret pw"
    assert search.admin_group == "Domain pkgdl admins" and search.timeout == 2


def test_the_bind_password_never_shows_in_a_repr():
    settings = settings_of(SEARCH)
    assert "s3cret pw" not in repr(settings) and "s3cret pw" not in repr(settings.ldap)


@pytest.mark.parametrize(("change", "named"), [
    ({"PKGDL_AUTH_BACKEND": "kerberos"}, "PKGDL_AUTH_BACKEND"),
    ({"PKGDL_LDAP_URL": ""}, "PKGDL_LDAP_URL"),
    ({"PKGDL_LDAP_URL": "http://dir.example.org"}, "PKGDL_LDAP_URL"),
    ({"PKGDL_LDAP_GROUP_BASE": ""}, "PKGDL_LDAP_GROUP_BASE"),
    ({"PKGDL_LDAP_GROUP_BASE": "not a dn"}, "PKGDL_LDAP_GROUP_BASE"),
    ({"PKGDL_LDAP_USER_DN": "uid=alice,ou=people,dc=example,dc=org"}, "{login}"),
    ({"PKGDL_LDAP_USER_DN": ""}, "PKGDL_LDAP_BIND_DN"),
    ({"PKGDL_LDAP_STARTTLS": "1", "PKGDL_LDAP_URL": "ldaps://dir.example.org"}, "PKGDL_LDAP_STARTTLS"),
    ({"PKGDL_LDAP_STARTTLS": "maybe"}, "PKGDL_LDAP_STARTTLS"),
    ({"PKGDL_LDAP_CA_FILE": "/nonexistent/ca.pem"}, "PKGDL_LDAP_CA_FILE"),
    ({"PKGDL_LDAP_TIMEOUT": "0"}, "PKGDL_LDAP_TIMEOUT"),
    ({"PKGDL_LDAP_TIMEOUT": "1.5"}, "PKGDL_LDAP_TIMEOUT"),
])
def test_bad_directory_settings_fail_at_start_naming_the_variable(change, named):
    with pytest.raises(ConfigError, match=re.escape(named)):
        settings_of(DIRECT | change)


@pytest.mark.parametrize(("missing", "named"), [
    ("PKGDL_LDAP_BIND_PASSWORD", "PKGDL_LDAP_BIND_PASSWORD"),
    ("PKGDL_LDAP_USER_BASE", "PKGDL_LDAP_USER_BASE"),
    ("PKGDL_LDAP_USER_FILTER", "PKGDL_LDAP_USER_FILTER"),
])
def test_search_then_bind_needs_all_four(missing, named):
    with pytest.raises(ConfigError, match=named):
        settings_of({k: v for k, v in SEARCH.items() if k != missing})


def test_a_user_filter_without_the_login_is_refused():
    with pytest.raises(ConfigError, match="PKGDL_LDAP_USER_FILTER"):
        settings_of(SEARCH | {"PKGDL_LDAP_USER_FILTER": "(objectClass=person)"})


@given(st.text(min_size=1))  # a login is never empty (refused before)
def test_an_escaped_login_is_one_attribute_value_of_a_dn(login):
    """Whatever the login, the DN keeps its shape: one uid RDN in front of the base, never another RDN."""
    parsed = parse_dn(f"uid={escape_dn_value(login)},ou=people,dc=example,dc=org")
    assert [kind for kind, _, _ in parsed] == ["uid", "ou", "dc", "dc"]


@given(st.text())
def test_an_escaped_login_is_one_assertion_value_of_a_filter(login):
    """RFC 4515: no unescaped *, (, ), NUL; every backslash starts a two-hex-digit escape."""
    escaped = escape_filter_value(login)
    assert not set("*()\0") & set(escaped)
    assert re.fullmatch(r"(?:[^\\]|\\[0-9a-f]{2})*", escaped, re.DOTALL)


@pytest.mark.parametrize("login", ["*", "a*", "(", ")", "\\", "al\0ice", "a,b", "a=b", "élise", " alice", "a b", ""])
def test_logins_outside_the_uid_pattern_are_refused_before_any_query(login):
    assert not acceptable_login(login)


@pytest.mark.parametrize("login", ["alice", "j.doe", "j_doe-2", "alice@corp.example"])
def test_ordinary_logins_are_accepted(login):
    assert acceptable_login(login)


@pytest.mark.parametrize(("value", "escaped"), [
    ("a,b=c", "a\\,b\\=c"), (" a ", "\\ a\\ "), ("a\\ ", "a\\\\\\ "), ("al\0ice", "al\\00ice"), ("#x", "\\#x"),
    ('"+;<>', '\\"\\+\\;\\<\\>'), ("élise", "élise"),
])
def test_dn_values_are_escaped_as_rfc_4514_asks(value, escaped):
    assert escape_dn_value(value) == escaped
