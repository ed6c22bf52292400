"""UForge representations: the scannedPackages listing and the uforgeError body, as XML (default) or JSON."""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from urllib.parse import quote

from flask import Response, has_request_context, request

UFORGE_NS = "http://www.usharesoft.com/uforge"
XML_TYPE = "application/xml"
JSON_TYPE = "application/json"


def wants_json() -> bool:
    """True when the client's Accept prefers JSON to XML; XML is the default."""
    if not has_request_context():
        return False
    accept = request.accept_mimetypes
    return accept.quality(JSON_TYPE) > accept.quality(XML_TYPE)


def error_response(status: int, message: str, message_id: str) -> Response:
    """A uforgeError body for the current request (the URI without its query string: it may carry a token)."""
    method = request.method if has_request_context() else ""
    uri = _printable(request.path) if has_request_context() else ""
    fields = {
        "statusCode": status,
        "requestMethod": method,
        "requestUri": uri,
        "timestamp": int(time.time() * 1000),
        "localizedErrorMsg": {"message": message, "messageId": message_id},
    }
    return _render("uforgeError", fields, status)


def scanned_packages_response(packages: Sequence[Mapping], as_json: bool) -> Response:
    """The scannedPackages listing object (SPEC 4.2)."""
    if as_json:
        body = {"scannedPackages": {"total": len(packages), "scannedPackages": {"scannedPackage": list(packages)}}}
        return Response(json.dumps(body, separators=(",", ":")), 200, content_type=JSON_TYPE)
    root = ET.Element(f"{{{UFORGE_NS}}}scannedPackages")
    ET.SubElement(root, "total").text = str(len(packages))
    holder = ET.SubElement(root, "scannedPackages")
    for package in packages:
        _append_fields(ET.SubElement(holder, "scannedPackage"), package)
    return Response(_xml_bytes(root), 200, content_type=f"{XML_TYPE}; charset=utf-8")


def _render(name: str, fields: Mapping, status: int) -> Response:
    if wants_json():
        return Response(json.dumps({name: fields}, separators=(",", ":")), status, content_type=JSON_TYPE)
    root = ET.Element(f"{{{UFORGE_NS}}}{name}")
    _append_fields(root, fields)
    return Response(_xml_bytes(root), status, content_type=f"{XML_TYPE}; charset=utf-8")


def _append_fields(parent: ET.Element, fields: Mapping) -> None:
    for key, value in fields.items():
        if value is None:
            continue
        child = ET.SubElement(parent, key)
        if isinstance(value, Mapping):
            _append_fields(child, value)
        else:
            child.text = _xml_text(value)


def _xml_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _xml_bytes(root: ET.Element) -> bytes:
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def _printable(path: str) -> str:
    """Percent-encode what XML 1.0 cannot carry (control characters) and anything non-ASCII, keep the rest."""
    return quote(path, safe="/:@!$&'()*+,;=-._~%")
