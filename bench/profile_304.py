"""In-process profile of the authenticated 304 path against a bare Flask 304: `python -m bench.profile_304 [N]`.

No server and no network: each app is called as WSGI with a prepared environ (what gunicorn hands it), so the
per-request cost of the app shows without gunicorn's share or a test client's. The reference is bench/bare_app.py,
the app scenario 3 measures against. Prints microseconds per request for both and the top functions by cumulative
time.
"""

from __future__ import annotations

import base64
import cProfile
import pstats
import random
import sys
import tempfile
import time
from pathlib import Path

from werkzeug.test import EnvironBuilder

from app import create_app
from app.config import Settings
from app.importer import add_packages
from app.users import User, hash_password, save_users
from storage_backends import open_storage

URL = "/users/alice/scannedinstances/1/scans/1/packages/1/bin"


def pkgdl_app(home: Path):  # noqa: ANN201 - a Flask app
    """An app over a local root with one package and a user, and the headers of a warm conditional GET."""
    (home / "packages").mkdir()
    save_users(home / "users.toml", [User("alice", hash_password("pw"), frozenset({"migration_access"}))])
    source = home / "x-1.0-1.x86_64.rpm"
    source.write_bytes(random.randbytes(1000))
    package = add_packages(open_storage((home / "packages").as_uri()), "alice", 1, 1, [str(source)])[0]
    settings = Settings(storage_url=(home / "packages").as_uri(), secret_keys=("k",),
                        burnlist_url=f"sqlite:///{home}/burnlist.sqlite3", users_file=str(home / "users.toml"))
    headers = {"Authorization": "Basic " + base64.b64encode(b"alice:pw").decode(),
               "If-None-Match": f'"{package.sha256}"'}
    return create_app(settings), headers


def call(app, environ: dict) -> str:  # noqa: ANN001 - a WSGI app
    """One request as a server makes it: a fresh environ, start_response, the body iterated and closed."""
    answer = []
    body = app(dict(environ), lambda status, headers, exc_info=None: answer.append(status))
    for _ in body:
        pass
    if hasattr(body, "close"):
        body.close()
    return answer[0]


def per_request_us(app, environ: dict, count: int) -> float:  # noqa: ANN001
    started = time.perf_counter()
    for _ in range(count):
        call(app, environ)
    return (time.perf_counter() - started) / count * 1e6


def main(count: int) -> None:
    with tempfile.TemporaryDirectory() as home:
        app, headers = pkgdl_app(Path(home))
        environ = EnvironBuilder(URL, headers=headers).get_environ()
        assert call(app, environ).startswith("304"), call(app, environ)
        from bench.bare_app import app as bare

        assert call(bare, environ).startswith("304")
        for _ in range(2):  # the second round is the one to read (caches and branch predictors warm)
            print(f"pkgdl 304: {per_request_us(app, environ, count):.1f} us/request")
            print(f"bare Flask 304 (bench/bare_app.py): {per_request_us(bare, environ, count):.1f} us/request")
        profile = cProfile.Profile()
        profile.enable()
        per_request_us(app, environ, count)
        profile.disable()
        pstats.Stats(profile).sort_stats("cumtime").print_stats("app/|flask_httpauth", 25)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3000)
