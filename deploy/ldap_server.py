"""A throwaway OpenLDAP directory for the tests: Debian's slapd (packages `slapd`, `ldap-utils`) on a free loopback
port, its configuration, database and log in one directory, seeded with `slapadd` before it starts, stopped by its
PID. No system service, no privileged port, nothing outside the directory.

The directory holds people under ou=people, groups (groupOfNames, and groupOfUniqueNames when asked) under ou=groups,
a service account, and, with the memberof overlay, each person's `memberOf` as Active Directory keeps it. slapd logs
every operation (`-d stats`), so tests count binds and searches in its log.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from deploy.processes import START_TIMEOUT, free_port, paused, require_free, stop_process, wait_for_port

SUFFIX = "dc=example,dc=org"
ROOT_DN = f"cn=admin,{SUFFIX}"
PEOPLE = f"ou=people,{SUFFIX}"
GROUPS = f"ou=groups,{SUFFIX}"
SERVICE_DN = f"cn=pkgdl,{SUFFIX}"
SCHEMAS = ("core", "cosine", "inetorgperson")
SCHEMA_DIR = Path("/etc/ldap/schema")
MODULE_DIRS = (Path("/usr/lib/ldap"), Path("/usr/lib64/openldap"), Path("/usr/lib/openldap"))


@dataclass(frozen=True)
class Person:
    """One inetOrgPerson under ou=people and the groups (cn) that list it."""

    login: str
    password: str
    groups: tuple[str, ...] = ()
    member_of: tuple[str, ...] = ()  # group DNs in the person's own memberOf (as Active Directory keeps them)
    aliases: tuple[str, ...] = ()  # further uid values of the same entry

    @property
    def dn(self) -> str:
        return f"uid={self.login},{PEOPLE}"


def ssha(password: str, salt: bytes | None = None) -> str:
    """An RFC 2307 {SSHA} userPassword value (what slappasswd writes)."""
    salt = salt or os.urandom(8)
    return "{SSHA}" + base64.b64encode(hashlib.sha1(password.encode() + salt).digest() + salt).decode()  # noqa: S324


def seed_ldif(people: Iterable[Person], service_password: str, unique_groups: Iterable[str] = (),
              extra: str = "") -> str:
    """The directory's entries: the suffix, the service account, people, one group per cn any person names
    (groupOfUniqueNames for the cns in ``unique_groups``, groupOfNames for the others), then ``extra`` LDIF."""
    people = list(people)
    unique = set(unique_groups)
    entries = [
        f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example",
        f"dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: people",
        f"dn: {GROUPS}\nobjectClass: organizationalUnit\nou: groups",
        f"dn: {SERVICE_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\ncn: pkgdl\n"
        f"userPassword: {ssha(service_password)}",
    ]
    for person in people:
        entries.append(f"dn: {person.dn}\nobjectClass: inetOrgPerson\nuid: {person.login}\ncn: {person.login}\n"
                       f"sn: {person.login}\nuserPassword: {ssha(person.password)}"
                       + "".join(f"\nuid: {alias}" for alias in person.aliases)
                       + "".join(f"\nmemberOf: {group}" for group in person.member_of))
    for cn in sorted({cn for person in people for cn in person.groups}):
        members = [person.dn for person in people if cn in person.groups]
        kind, attribute = ("groupOfUniqueNames", "uniqueMember") if cn in unique else ("groupOfNames", "member")
        entries.append(f"dn: cn={cn},{GROUPS}\nobjectClass: {kind}\ncn: {cn}\n"
                       + "\n".join(f"{attribute}: {dn}" for dn in members))
    return "\n\n".join(entries + ([extra.strip()] if extra.strip() else [])) + "\n"


def slapd_conf(home: Path, module_dir: Path, tls: tuple[Path, Path] | None, memberof: bool) -> str:
    """slapd.conf: schemas, one mdb database under ``home``, passwords readable by nobody (binds only)."""
    lines = [f"include {SCHEMA_DIR / name}.schema" for name in SCHEMAS]
    lines += [f"modulepath {module_dir}", "moduleload back_mdb"]
    if memberof:
        lines.append("moduleload memberof")
    lines += [f"pidfile {home / 'slapd.pid'}", f"argsfile {home / 'slapd.args'}"]
    if tls:
        lines += [f"TLSCertificateFile {tls[0]}", f"TLSCertificateKeyFile {tls[1]}"]
    lines += [
        "database mdb", "maxsize 104857600", f'suffix "{SUFFIX}"', f'rootdn "{ROOT_DN}"', "rootpw rootsecret",
        f"directory {home / 'data'}",
        "access to attrs=userPassword by anonymous auth by * none",
        "access to * by * read",
    ]
    if memberof:
        lines += ["overlay memberof", "memberof-group-oc groupOfNames", "memberof-member-ad member",
                  "memberof-memberof-ad memberOf", "memberof-refint true"]
    return "\n".join(lines) + "\n"


def slapd_binary() -> str | None:
    """Debian installs slapd in /usr/sbin, which a non-root PATH often lacks."""
    return shutil.which("slapd") or next((p for p in ("/usr/sbin/slapd",) if os.access(p, os.X_OK)), None)


@dataclass
class Slapd:
    """A running slapd; ``url`` is ldap://127.0.0.1:PORT (StartTLS available when started with a certificate)."""

    home: Path
    people: list[Person]
    service_password: str = "service-secret"  # noqa: S105 - a throwaway test directory
    tls: tuple[Path, Path] | None = None
    memberof: bool = False
    unique_groups: tuple[str, ...] = ()
    extra_ldif: str = ""  # further entries, added after the seed's
    port: int = field(default_factory=free_port)
    ldaps_port: int = field(default_factory=free_port)  # listened on only with a certificate
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def ldaps_url(self) -> str:
        return f"ldaps://127.0.0.1:{self.ldaps_port}"

    @property
    def log(self) -> Path:
        return self.home / "slapd.log"

    def start(self) -> None:
        """Seed the database once (slapadd), then start slapd in the foreground with its log in ``home``."""
        binary = slapd_binary()
        module_dir = next((d for d in MODULE_DIRS if (d / "back_mdb.so").exists()), None)
        if binary is None or module_dir is None:
            raise FileNotFoundError("slapd not found (apt-get install slapd ldap-utils)")
        conf = self.home / "slapd.conf"
        if not conf.exists():
            (self.home / "data").mkdir(parents=True)
            conf.write_text(slapd_conf(self.home, module_dir, self.tls, self.memberof))
            (self.home / "seed.ldif").write_text(seed_ldif(self.people, self.service_password, self.unique_groups,
                                                                     self.extra_ldif))
            slapadd = str(Path(binary).with_name("slapadd"))  # Debian: beside slapd (a link to it)
            subprocess.run([slapadd, "-f", str(conf), "-l", str(self.home / "seed.ldif")],
                           check=True, capture_output=True, timeout=60)
        require_free(self.port, "slapd")
        urls = f"{self.url}/"
        if self.tls:
            require_free(self.ldaps_port, "slapd (ldaps)")
            urls += f" {self.ldaps_url}/"
        with self.log.open("ab") as log:
            # -d stats: foreground, one line per connection and operation (BIND, SRCH) on standard error.
            self.process = subprocess.Popen([binary, "-f", str(conf), "-h", urls, "-d", "stats"],
                                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for_port(self.port, self.process, self.log, START_TIMEOUT)
        if self.tls:
            wait_for_port(self.ldaps_port, self.process, self.log, START_TIMEOUT)

    def stop(self) -> None:
        stop_process(self.process, timeout=5)
        self.process = None

    def paused(self) -> contextlib.AbstractContextManager[None]:
        """Frozen for the block: connections are accepted by the kernel, nothing answers."""
        return paused(self.process)

    def settle(self, quiet: float = 0.3, deadline: float = 5.0) -> None:
        """Wait until slapd's log has not grown for `quiet` seconds (at most `deadline`): it writes an operation's
        lines after answering it, so a count read at once can miss the last one."""
        stop_at = time.monotonic() + deadline
        size = -1
        while time.monotonic() < stop_at:
            now = self.log.stat().st_size if self.log.exists() else 0
            if now == size:
                return
            size = now
            time.sleep(quiet)

    def binds(self, dn: str) -> int:
        """How many simple binds as ``dn`` slapd has logged so far."""
        return len(re.findall(rf'BIND dn="{re.escape(dn)}" method=128', self.log.read_text(errors="replace")))

    def operations(self) -> str:
        """slapd's log so far (each BIND's DN and each SRCH's base and filter)."""
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def running_slapd(home: Path, people: Iterable[Person], **options) -> Iterator[Slapd]:  # noqa: ANN003
    """A seeded slapd for the block."""
    server = Slapd(home, list(people), **options)
    server.start()
    try:
        yield server
    finally:
        server.stop()
