"""In-process profile of the authenticated 304 path against a bare Flask 304: `python -m bench.profile_304 [N]`.

No server and no network: the Flask test client drives both apps, so the per-request cost of pkgdl's own code shows
without gunicorn's share. Prints microseconds per request for both and the top functions by cumulative time.
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

from flask import Flask, Response

from app import create_app
from app.config import Settings
from app.importer import add_packages
from app.users import User, hash_password, save_users
from storage_backends import open_storage

URL = "/users/alice/scannedinstances/1/scans/1/packages/1/bin"


def pkgdl_client(home: Path):  # noqa: ANN201 - a FlaskClient
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
    return create_app(settings).test_client(), headers


def per_request_us(client, url: str, headers: dict, count: int) -> float:  # noqa: ANN001
    started = time.perf_counter()
    for _ in range(count):
        client.get(url, headers=headers)
    return (time.perf_counter() - started) / count * 1e6


def main(count: int) -> None:
    with tempfile.TemporaryDirectory() as home:
        client, headers = pkgdl_client(Path(home))
        assert client.get(URL, headers=headers).status_code == 304
        bare = Flask("bare")
        bare.add_url_rule("/x", "x", lambda: Response(status=304))
        print(f"pkgdl 304: {per_request_us(client, URL, headers, count):.0f} us/request")
        print(f"bare Flask 304: {per_request_us(bare.test_client(), '/x', headers, count):.0f} us/request")
        profile = cProfile.Profile()
        profile.enable()
        per_request_us(client, URL, headers, count)
        profile.disable()
        pstats.Stats(profile).sort_stats("cumtime").print_stats("app/|flask_httpauth", 25)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3000)
