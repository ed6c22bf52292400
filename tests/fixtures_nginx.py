"""nginx from deploy/nginx.conf.template in front of real gunicorn instances, on free loopback ports."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from deploy.processes import NO_S3_ENDPOINT, find_binary, start_nginx


@pytest.fixture(scope="module")
def make_nginx(tmp_path_factory) -> Iterator[Callable[..., Any]]:
    """A factory: ``make_nginx(upstreams, storage_root, s3_endpoint=...)`` renders the template, starts nginx and
    returns it; every nginx started is stopped at the end of the module."""
    if find_binary("nginx", "/usr/sbin/nginx") is None:
        pytest.skip("nginx binary not found (apt-get install nginx-light)")
    started = []

    def start(upstreams: Iterable[str], storage_root: Path, s3_endpoint: str = NO_S3_ENDPOINT):
        nginx = start_nginx(tmp_path_factory.mktemp("nginx-deploy"), upstreams, storage_root, s3_endpoint)
        started.append(nginx)
        return nginx

    try:
        yield start
    finally:
        for nginx in started:
            nginx.stop()
