"""A self-signed certificate for the demo and the tests (nginx terminates TLS: deploy/nginx.conf.template).

Made with the `openssl` command (Debian's `openssl` package): an ECDSA P-256 key and a certificate for `localhost`
and 127.0.0.1, valid 30 days. It is its own CA: clients trust it with `curl --cacert` or requests' `verify=`. A real
deployment mounts its own certificate and key instead (README, "nginx").
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

CERTIFICATE_NAME, KEY_NAME = "pkgdl.crt", "pkgdl.key"
# Mozilla's "intermediate" profile without DHE (no dhparam file): as deploy/nginx.conf.template spells it.
TLS_PROTOCOLS = "TLSv1.2 TLSv1.3"
TLS_CIPHERS = ("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
               "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305")


def demo_certificate(directory: Path, days: int = 30) -> tuple[Path, Path]:
    """(certificate, key) in ``directory``, made once and reused while both files exist."""
    certificate, key = directory / CERTIFICATE_NAME, directory / KEY_NAME
    if certificate.is_file() and key.is_file():
        return certificate, key
    openssl = shutil.which("openssl")
    if openssl is None:
        raise FileNotFoundError("openssl not found (apt-get install openssl): it makes the demo TLS certificate")
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-days", str(days), "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(certificate),
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-addext", "basicConstraints=critical,CA:TRUE"],
                   check=True, capture_output=True, timeout=60)
    key.chmod(0o600)
    return certificate, key
