"""Render deploy/nginx.conf.template: `${PKGDL_...}` filled in like envsubst, unknown or missing names refused.

    PKGDL_NGINX_LISTEN=443 PKGDL_NGINX_HTTP_LISTEN=80 PKGDL_PUBLIC_URL=https://dl.example.com \
    PKGDL_TLS_CERTIFICATE=/etc/ssl/dl.crt PKGDL_TLS_CERTIFICATE_KEY=/etc/ssl/dl.key \
    PKGDL_UPSTREAM_SERVERS="10.0.0.5:8080 10.0.0.6:8080" PKGDL_STORAGE_ROOT=/srv/packages \
        python deploy/render_nginx.py > nginx.conf

Required: the listen addresses, the public URL, the certificate and key, the upstreams (`host:port` entries separated
by spaces or commas, or nginx `server ...;` lines), the storage root. Optional (OPTIONAL below): the S3 endpoint (only
for X-Accel offload from S3), the log and pid paths, the temp directory.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path

TEMPLATE = Path(__file__).with_name("nginx.conf.template")
VARIABLES = frozenset({
    "PKGDL_NGINX_LISTEN", "PKGDL_UPSTREAM_SERVERS", "PKGDL_STORAGE_ROOT", "PKGDL_S3_ENDPOINT",
    "PKGDL_NGINX_ACCESS_LOG", "PKGDL_NGINX_ERROR_LOG", "PKGDL_NGINX_PID", "PKGDL_NGINX_TEMP",
    "PKGDL_NGINX_HTTP_LISTEN", "PKGDL_PUBLIC_URL", "PKGDL_TLS_CERTIFICATE", "PKGDL_TLS_CERTIFICATE_KEY",
})
# Defaults of the variables a deployment may leave out. An S3 endpoint nobody listens on: with local storage nothing is
# ever offloaded to the S3 location.
OPTIONAL = {
    "PKGDL_S3_ENDPOINT": "http://127.0.0.1:9",
    "PKGDL_NGINX_ACCESS_LOG": "/dev/stdout",
    "PKGDL_NGINX_ERROR_LOG": "/dev/stderr",
    "PKGDL_NGINX_PID": "/run/nginx.pid",
    "PKGDL_NGINX_TEMP": "/var/lib/nginx",  # Debian's own
}
_SERVER_LINE = re.compile(r"^\s*server\s")
# Only ${PKGDL_...} is ours: nginx's own $uri, $host... are left alone, as envsubst does with NGINX_ENVSUBST_FILTER.
_PLACEHOLDER = re.compile(r"\$\{(PKGDL_[A-Z0-9_]*)\}")


def render(values: Mapping[str, str], template: str | None = None) -> str:
    """The template with every placeholder replaced (OPTIONAL ones defaulted); ValueError names unknown or missing
    variables."""
    text = TEMPLATE.read_text() if template is None else template
    values = {**OPTIONAL, **values}
    if "PKGDL_UPSTREAM_SERVERS" in values:
        values["PKGDL_UPSTREAM_SERVERS"] = upstream_lines(values["PKGDL_UPSTREAM_SERVERS"])
    used = set(_PLACEHOLDER.findall(text))
    problems = [f"unknown variable {name}" for name in sorted((used | set(values)) - VARIABLES)]
    values = {name: value for name, value in values.items() if name in used or name not in OPTIONAL}
    problems += [f"missing value for {name}" for name in sorted(used - set(values))]
    if problems:
        raise ValueError("; ".join(problems))
    return _PLACEHOLDER.sub(lambda match: values[match.group(1)], text)


def upstream_lines(value: str) -> str:
    """nginx `server` lines from `host:port` entries (spaces or commas between them); lines already written as
    `server ...;` are kept as they are."""
    if _SERVER_LINE.match(value):
        return value
    entries = [entry for entry in re.split(r"[\s,]+", value) if entry]
    if not entries or any(";" in entry or "{" in entry for entry in entries):
        raise ValueError("PKGDL_UPSTREAM_SERVERS must be host:port entries or nginx `server host:port;` lines")
    return " ".join(f"server {entry};" for entry in entries)


def main() -> int:
    """Render from the environment to standard output."""
    values = {name: os.environ[name] for name in VARIABLES if name in os.environ}
    try:
        sys.stdout.write(render(values))
    except ValueError as error:
        print(f"render_nginx: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
