"""`make compose-env`: the secrets docker-compose.yml reads, made once with random values and kept out of git.

- `.env` beside docker-compose.yml: the S3 access key and secret (SeaweedFS's identity and the app's storage options);
- `deploy/tls/pkgdl.crt` and `pkgdl.key`: a self-signed demo certificate for nginx (replace with a real one).

Existing files are kept; `--rotate` makes new S3 credentials (then `docker compose up -d` restarts what reads them).
"""

from __future__ import annotations

import argparse
import secrets
import sys
from pathlib import Path

from deploy.tls import demo_certificate

ROOT = Path(__file__).resolve().parent.parent
ENV_FILE = ROOT / ".env"
TLS_DIRECTORY = ROOT / "deploy" / "tls"


def env_text() -> str:
    """A fresh .env with random S3 credentials."""
    return ("# Made by `make compose-env` (deploy/compose_env.py); git-ignored; `make compose-env ROTATE=1` renews.\n"
            f"PKGDL_S3_ACCESS_KEY=pkgdl-{secrets.token_hex(6)}\n"
            f"PKGDL_S3_SECRET_KEY={secrets.token_urlsafe(30)}\n")


def main(argv: list[str] | None = None) -> int:
    """Write what is missing (or, with --rotate, new S3 credentials); print what was done."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rotate", action="store_true", help="replace the S3 credentials in .env")
    arguments = parser.parse_args(argv)
    if arguments.rotate or not ENV_FILE.exists():
        ENV_FILE.write_text(env_text())
        ENV_FILE.chmod(0o600)
        print(f"wrote {ENV_FILE.name} (random S3 credentials)")
    else:
        print(f"kept {ENV_FILE.name}")
    certificate, _ = demo_certificate(TLS_DIRECTORY, days=365)
    print(f"TLS certificate {certificate.relative_to(ROOT)} (self-signed for localhost and 127.0.0.1)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
