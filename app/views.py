"""HTTP endpoints: the package binary, the scan's package listing, and operations probes."""

from __future__ import annotations

import hashlib
import logging
import re
import time
from pathlib import Path

from flask import Blueprint, Response, request

from app.access import Access, authorize_download, require_reader
from app.access_log import SENDFILE_BYTES
from app.conditional import Representation, evaluate
from app.delivery import DeliveryPolicy, RequestDelivery
from app.download import empty_response, package_response
from app.errors import AccessDenied, InvalidRequest, NotFound, OffloadFailed, Unavailable
from app.ids import is_number_segment, is_uid
from app.landing import LANDING_HEADERS, prefers_html, render_landing_page
from app.link_ledger import Link
from app.listing import listing_entries, packages_differing_from
from app.offload import REQUEST_PATH_HEADER, SENT_HEADER, TICKET_HEADER, is_conditional
from app.representations import scanned_packages_response, wants_json
from app.services import services
from app.tokens import PackageRef

bp = Blueprint("pkgdl", __name__)
log = logging.getLogger("pkgdl")
OPENAPI_DOCUMENT = Path(__file__).with_name("openapi.json")

SCAN_PATH = "/users/<uid>/scannedinstances/<siid>/scans/<sid>"


_ENCODED_SEPARATORS = re.compile(r"%(2f|5c|00)", re.IGNORECASE)


@bp.before_app_request
def refuse_encoded_separators() -> None:
    """An encoded '/', '\\' or NUL in the raw path is never one of our ids: 404, whatever the server decoded."""
    raw_uri = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI") or ""
    if _ENCODED_SEPARATORS.search(raw_uri.split("?", 1)[0]):
        raise NotFound()


def scan_ids(uid: str, siid: str, sid: str) -> tuple[str, int, int]:
    """Validate path ids before any I/O: anything malformed is a 404."""
    if not (is_uid(uid) and is_number_segment(siid) and is_number_segment(sid)):
        raise NotFound()
    return uid, int(siid), int(sid)


@bp.route(f"{SCAN_PATH}/packages/<pid>/bin", methods=["GET", "HEAD", "POST"], provide_automatic_options=False)
def package_binary(uid: str, siid: str, sid: str, pid: str) -> Response:
    """The package's bytes, for its owner's credentials or a single-use token (README: the /bin endpoint and
    "Download tokens")."""
    started = time.monotonic()
    if not is_number_segment(pid):
        raise NotFound()
    ref = PackageRef(*scan_ids(uid, siid, sid), int(pid))
    access = authorize_download(ref)
    package = services().catalog.package(ref.uid, ref.siid, ref.sid, ref.pid)
    if access.by_token and request.method == "GET" and "Range" not in request.headers \
            and prefers_html(request.headers.get("Accept")):
        return _landing_page(access, package.full_name)
    if access.by_token and (request.method == "HEAD" or is_conditional(request.headers)):
        _refuse_spent_link(access)  # answers without a body (HEAD, 304, 412, 416) never reach the claim's check
    # A token's bytes are streamed by us, never handed to sendfile(2): the link counts what was written.
    file_wrapper = None if access.by_token else request.environ.get("wsgi.file_wrapper")
    policy = DeliveryPolicy(cache_headers=access.cache_headers, offload=services().settings.offload == "x-accel",
                            observer=RequestDelivery(services(), access, ref, package, started))
    response = package_response(services().storage, package, request.method, request.headers, policy, file_wrapper)
    if response.status_code == 304:
        services().metrics.not_modified.inc()
    if isinstance(file_wrapper, type) and isinstance(response.response, file_wrapper):
        # gunicorn counts no bytes it sends with sendfile(2): tell our access log (app/access_log.py).
        request.environ[SENDFILE_BYTES] = package.size
    return response


def _refuse_spent_link(access: Access) -> None:
    """403 for a link that can write nothing more (spent, revoked); the reason goes to metrics only."""
    reason = services().links.refusal(access.claims)
    if reason is not None:
        services().metrics.token_rejected(reason)
        raise AccessDenied()


def _landing_page(access: Access, full_name: str) -> Response:
    """The click-through page for a browser (link scanners fetch links before people do); a link already used
    says so at once instead of offering a button that cannot work (the button asks for the whole package, which
    only an unused link gives; a broken download resumes from the browser's own download list, with Range)."""
    if services().links.state(access.claims) is not None:
        services().metrics.token_rejected(services().links.refusal(access.claims) or "second_copy")
        raise AccessDenied()
    return Response(render_landing_page(full_name), 200, content_type="text/html; charset=utf-8",
                    headers=LANDING_HEADERS)


@bp.route(f"{SCAN_PATH}/packages", methods=["GET", "HEAD"], provide_automatic_options=False)
def scan_packages(uid: str, siid: str, sid: str) -> Response:
    """The scan's packages with fresh single-use tokens, as UForge scannedPackages (README: the listing)."""
    uid, siid_number, sid_number = scan_ids(uid, siid, sid)
    user = require_reader(uid)
    manifest = services().catalog.manifest(uid, siid_number, sid_number)
    packages, validators = list(manifest.packages), [manifest.digest]
    compare_with = request.args.get("compareWith")
    if compare_with:
        other = services().catalog.manifest(*_scan_named(compare_with, user))
        packages = packages_differing_from(packages, other.packages)
        validators.append(other.digest)
    as_json = wants_json()
    validators.append("json" if as_json else "xml")
    # Weak: every answer carries fresh tokens, so two answers are equivalent, not byte-identical.
    etag = f'W/"{hashlib.sha256(" ".join(validators).encode()).hexdigest()[:40]}"'
    headers = {"ETag": etag, "Vary": "Authorization, Accept", "Cache-Control": "private, no-cache"}
    if evaluate("GET", request.headers, Representation(etag=etag, last_modified=None, size=0)).status == 304:
        return empty_response(304, headers)
    response = scanned_packages_response(listing_entries(packages, uid, siid_number, sid_number), as_json)
    response.headers.update(headers)
    return response


_SCAN_URI = re.compile(r"(?:^|/)users/([^/]+)/scannedinstances/([^/]+)/scans/([^/?#]+)/?$")


def _scan_named(uri: str, user) -> tuple[str, int, int]:  # noqa: ANN001 - a users.User
    match = _SCAN_URI.search(uri)
    if not match:
        raise InvalidRequest("compareWith must name a scan: users/{uid}/scannedinstances/{siid}/scans/{sid}")
    other = scan_ids(*match.groups())
    if not user.may_read(other[0]):
        raise AccessDenied()
    return other


@bp.route("/_pkgdl/offload-done", methods=["POST"], provide_automatic_options=False)
def offload_done() -> Response:
    """nginx finished an offloaded transfer (its post_action, deploy/nginx.conf.template): settle the link with
    the bytes nginx sent, as if the app had streamed them. Without a genuine ticket nothing changes."""
    _settle_offloaded(sent=request.headers.get(SENT_HEADER, ""))
    return Response(status=204)


@bp.route("/_pkgdl/offload-failed", methods=["POST"], provide_automatic_options=False)
def offload_failed() -> Response:
    """nginx could not read an offloaded package (deploy/nginx.conf.template posts here from its internal
    location): the link is settled with nothing sent (an unused link is unused again), and the client gets 502."""
    if not _settle_offloaded(sent="0"):
        log.warning("offloaded delivery failed in nginx (no link to settle)")
    raise OffloadFailed(request_uri=request.headers.get(REQUEST_PATH_HEADER))


def _settle_offloaded(sent: str) -> bool:
    """Settle the offloaded request named by nginx's ticket with `sent` bytes from the start; False without a
    genuine ticket. Settling twice changes nothing (the request is no longer running)."""
    report = services().tokens.offload_report(request.headers.get(TICKET_HEADER, ""))
    if report is None or not sent.isascii() or not sent.isdigit():
        return False
    token_id, request_id, expires_at = report
    state = services().links.settle(Link(token_id, expires_at), request_id, ((0, int(sent)),), int(sent))
    reason = services().links.why_spent(state)
    log.info("offloaded transfer of link %s ended after %s bytes%s", token_id, sent,
             f"; link spent ({reason})" if reason else "")
    return True


@bp.route("/healthz", methods=["GET", "HEAD"], provide_automatic_options=False)
def healthz() -> Response:
    """The process is up."""
    return Response("ok\n", content_type="text/plain")


@bp.route("/readyz", methods=["GET", "HEAD"], provide_automatic_options=False)
def readyz() -> Response:
    """Storage root and burn-list reachable; 503 for any fault of either (refused credentials included: a readiness
    probe says "not ready", whatever the cause, and the log says which)."""
    try:
        services().storage.ping()
        services().burnlist.ping()
    except Exception as fault:  # noqa: BLE001 - every dependency fault means "not ready"
        log.warning("not ready: %r", fault)
        raise Unavailable() from None
    return Response("ready\n" + _directory_state(), content_type="text/plain")


def _directory_state() -> str:
    """With PKGDL_AUTH_BACKEND=ldap, whether the directory answers. It does not make the instance unready: links
    and remembered credentials keep working without it, and every instance shares it, so a balancer taking them
    all out would stop what still works."""
    if services().settings.ldap is None:
        return ""
    if not services().authenticator.store.available():
        return "directory: unavailable (Basic sign-ins not remembered get 503; download links work)\n"
    return "directory: ok\n"


@bp.route("/openapi.json", methods=["GET", "HEAD"], provide_automatic_options=False)
def openapi() -> Response:
    """The OpenAPI 3.1 description of these endpoints."""
    return Response(OPENAPI_DOCUMENT.read_bytes(), content_type="application/json")


@bp.route("/metrics", methods=["GET"], provide_automatic_options=False)
def metrics() -> Response:
    """Prometheus text exposition."""
    return Response(services().metrics.exposition(), content_type="text/plain; version=0.0.4; charset=utf-8")
