"""nginx from deploy/nginx.conf.template in front of real gunicorn instances, on free loopback ports."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from deploy.processes import NO_S3_ENDPOINT, find_binary, start_nginx
from deploy.tls import demo_certificate


@pytest.fixture(scope="session")
def nginx_tls(tmp_path_factory) -> tuple[Path, Path]:
    """One self-signed (certificate, key) for every template nginx of the session; clients verify with the
    certificate (requests' verify=, curl --cacert)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl not found (apt-get install openssl)")
    return demo_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def make_nginx(tmp_path_factory, nginx_tls) -> Iterator[Callable[..., Any]]:
    """A factory: ``make_nginx(upstreams, storage_root, s3_endpoint=...)`` renders the template, starts nginx (HTTPS
    with the session's certificate, plain HTTP redirecting) and returns it; every nginx started is stopped at the
    end of the module."""
    if find_binary("nginx", "/usr/sbin/nginx") is None:
        pytest.skip("nginx binary not found (apt-get install nginx-light)")
    started = []

    def start(upstreams: Iterable[str], storage_root: Path, s3_endpoint: str = NO_S3_ENDPOINT, public_url: str = ""):
        nginx = start_nginx(tmp_path_factory.mktemp("nginx-deploy"), upstreams, storage_root, s3_endpoint,
                            public_url=public_url, tls=nginx_tls)
        started.append(nginx)
        return nginx

    try:
        yield start
    finally:
        for nginx in started:
            nginx.stop()
