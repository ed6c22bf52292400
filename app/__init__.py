"""pkgdl: a download service for scanned package binaries."""

from __future__ import annotations

import logging
import sys

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from app.config import Settings, from_env


def create_app(settings: Settings | None = None, storage=None) -> Flask:  # noqa: ANN001 - a storage_backends.Storage
    """Build the app: settings, services, error table, endpoints. Nothing reads the environment at import."""
    from app.errors import register_error_handlers
    from app.headers import TOKEN_CACHE_HEADERS
    from app.links import on_token_path
    from app.services import EXTENSION_KEY, build_services
    from app.views import bp

    settings = settings or from_env()
    settings.require_signing_keys()
    app = Flask(__name__)
    # No redirect of ours takes its host from the request: werkzeug answers `//` in a path with a 308 to
    # http://<Host>/... (the token in the Location, past the error table, since Flask returns routing redirects as
    # they are). Such a path is a 404 like any malformed id. (No rule ends with a slash, so strict_slashes, the other
    # redirect, never fires: a trailing slash is a 404 as well.)
    app.url_map.merge_slashes = False
    app.extensions[EXTENSION_KEY] = build_services(settings, storage)
    register_error_handlers(app)
    app.register_blueprint(bp)
    if settings.trusted_proxies:
        # Behind nginx the client's address (for login throttling and logs) is in X-Forwarded-For; trust exactly
        # as many hops as there are proxies, never a client-supplied header beyond them, and only from a peer
        # that is a proxy (PKGDL_FORWARDED_ALLOW_IPS): a client reaching gunicorn itself speaks for itself.
        fixed = ProxyFix(app.wsgi_app, x_for=settings.trusted_proxies, x_proto=settings.trusted_proxies,
                         x_host=0, x_port=0, x_prefix=0)
        app.wsgi_app = _from_trusted_peers(fixed, app.wsgi_app, settings.forwarded_allow_ips)

    @app.after_request
    def _token_path_headers(response):  # noqa: ANN001, ANN202
        # Every answer on the token path (errors included) is uncacheable and leaks no Referer; when Basic
        # credentials admitted the request, the Basic cache headers stand.
        if on_token_path():
            response.headers.update(TOKEN_CACHE_HEADERS)
            response.headers.pop("Vary", None)
        return response

    _log_to_stderr()
    return app


def _from_trusted_peers(fixed, plain, trusted: tuple[str, ...]):  # noqa: ANN001, ANN202 - WSGI callables
    """The proxy-aware app for requests from a trusted peer, the plain one for everybody else."""
    def wsgi(environ, start_response):  # noqa: ANN001, ANN202
        trusted_peer = "*" in trusted or environ.get("REMOTE_ADDR") in trusted
        return (fixed if trusted_peer else plain)(environ, start_response)

    return wsgi


def _log_to_stderr() -> None:
    """Audit and error lines go to standard error unless the host process configured logging already."""
    # urllib3 logs request URLs (DEBUG, and WARNING for unparsable headers); the S3 reads' carry a signature.
    if logging.getLogger("urllib3").level == logging.NOTSET:
        logging.getLogger("urllib3").setLevel(logging.ERROR)
    logger = logging.getLogger("pkgdl")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
