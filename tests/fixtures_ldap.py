"""A real directory: Debian's slapd on a free loopback port (deploy/ldap_server.py), seeded with people and groups,
with StartTLS on a demo certificate; and the PKGDL_LDAP_* environment for either way of finding users."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from app.config import LdapSettings, ldap_from_env
from deploy.ldap_server import GROUPS, PEOPLE, SERVICE_DN, SUFFIX, Person, Slapd, slapd_binary
from deploy.tls import demo_certificate

LDAP_PASSWORDS = {"alice": "alice ldap pw", "bob": "bob ldap pw", "carol": "carol ldap pw", "dave": "dave ldap pw",
                  "frank": "frank ldap pw", "grace": "grace ldap pw", "henry": "tab\tand\x01control ü"}
LDAP_PEOPLE = [
    Person("alice", LDAP_PASSWORDS["alice"], ("migration_access",)),  # entitled (groupOfNames member)
    Person("bob", LDAP_PASSWORDS["bob"], ("other_team",)),  # in a group, not the entitlement's
    Person("carol", LDAP_PASSWORDS["carol"], ("migration_access", "pkgdl_admins")),  # admin (groupOfUniqueNames)
    Person("dave", LDAP_PASSWORDS["dave"], member_of=(f"cn=Migration_Access,{GROUPS}",)),  # memberOf only, as AD
    # memberOf values that are not groups directly under the base: another OU, a multi-valued RDN one level up.
    Person("frank", LDAP_PASSWORDS["frank"], member_of=(f"cn=migration_access,ou=elsewhere,{SUFFIX}",
                                                        f"cn=pkgdl_admins+ou=groups,{SUFFIX}")),
    Person("grace", LDAP_PASSWORDS["grace"], ("migration_access",), aliases=("victim",)),  # two uid values
    Person("henry", LDAP_PASSWORDS["henry"], ("migration_access",)),  # a password SASLprep would refuse
]
# Groups that must grant bob nothing: a cn value added to another group, a group in a sub-OU of the base.
TRICK_GROUPS = f"""dn: cn=sneaky,{GROUPS}
objectClass: groupOfNames
cn: sneaky
cn: pkgdl_admins
cn: migration_access
member: uid=bob,{PEOPLE}

dn: ou=sub,{GROUPS}
objectClass: organizationalUnit
ou: sub

dn: cn=migration_access,ou=sub,{GROUPS}
objectClass: groupOfNames
cn: migration_access
member: uid=bob,{PEOPLE}
"""
SERVICE_PASSWORD = "service account pw"


@pytest.fixture(scope="session")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    """A running slapd for the whole session; tests that stop it must start it again."""
    if slapd_binary() is None:
        pytest.skip("slapd is not installed (apt-get install slapd ldap-utils)")
    home = tmp_path_factory.mktemp("slapd")
    server = Slapd(home, LDAP_PEOPLE, service_password=SERVICE_PASSWORD, tls=demo_certificate(home / "tls"),
                   memberof=True, unique_groups=("pkgdl_admins",), extra_ldif=TRICK_GROUPS)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def ldap_env(server: Slapd, mode: str = "direct", **extra: str) -> dict[str, str]:
    """PKGDL_AUTH_BACKEND=ldap against ``server``: "direct" bind with a DN template, or "search" then bind as the
    service account; ``extra`` adds or overrides PKGDL_LDAP_<NAME> variables."""
    env = {"PKGDL_AUTH_BACKEND": "ldap", "PKGDL_LDAP_URL": server.url, "PKGDL_LDAP_GROUP_BASE": GROUPS,
           "PKGDL_LDAP_TIMEOUT": "1"}
    if mode == "direct":
        env["PKGDL_LDAP_USER_DN"] = f"uid={{login}},{PEOPLE}"
    else:
        env |= {"PKGDL_LDAP_BIND_DN": SERVICE_DN, "PKGDL_LDAP_BIND_PASSWORD": SERVICE_PASSWORD,
                "PKGDL_LDAP_USER_BASE": PEOPLE, "PKGDL_LDAP_USER_FILTER": "(&(objectClass=inetOrgPerson)(uid={login}))"}
    return env | {f"PKGDL_LDAP_{name}": value for name, value in extra.items()}


def ldap_settings(server: Slapd, mode: str = "direct", **extra: str) -> LdapSettings:
    """The same, parsed as create_app would."""
    return ldap_from_env(ldap_env(server, mode, **extra))
