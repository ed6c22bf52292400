"""Render deploy/nginx.conf.template: `${PKGDL_...}` filled in like envsubst, unknown or missing names refused.

    python deploy/render_nginx.py > nginx.conf      # values from the environment
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
# Only ${PKGDL_...} is ours: nginx's own $uri, $host... are left alone, as envsubst does with NGINX_ENVSUBST_FILTER.
_PLACEHOLDER = re.compile(r"\$\{(PKGDL_[A-Z0-9_]*)\}")


def render(values: Mapping[str, str], template: str | None = None) -> str:
    """The template with every placeholder replaced; ValueError names unknown or missing variables."""
    text = TEMPLATE.read_text() if template is None else template
    used = set(_PLACEHOLDER.findall(text))
    problems = [f"unknown variable {name}" for name in sorted((used | set(values)) - VARIABLES)]
    problems += [f"missing value for {name}" for name in sorted(used - set(values))]
    if problems:
        raise ValueError("; ".join(problems))
    return _PLACEHOLDER.sub(lambda match: values[match.group(1)], text)


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
