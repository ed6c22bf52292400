"""UForge representations: the scannedPackages listing and the uforgeError body, as XML (default) or JSON.

The judge is UForge's schema (uforge.xsd, public in usharesoft/api-docs) and the PyXB bindings the UForge SDK generated
from it. Every complexType there is an ``xs:sequence`` whose extensions list their base type's elements first, so
element ORDER is part of the contract, and only elements the schema defines may appear. The tuples below are that
order; the writer sorts by them and refuses any other name, so a field added in the wrong place fails loudly.
"""

from __future__ import annotations

import functools
import json
import unicodedata
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from urllib.parse import quote

from flask import Response, has_request_context, request

from app.manifest import format_timestamp

UFORGE_NS = "http://www.usharesoft.com/uforge"
# Exactly this: the UForge SDK turns a 2xx body into objects only when Content-Type equals "application/xml" (it
# compares the whole header); the XML prolog already says UTF-8.
XML_TYPE = "application/xml"
JSON_TYPE = "application/json"

# UForgeObject, then UForgeUploadObject, then Pkg, then ScannedPkg (uforge.xsd; the order of the schema, which is not
# alphabetical: `shortTag` comes before `repositoryName`, `epoch` last of Pkg).
SCANNED_PACKAGE_ELEMENTS = (
    "created", "dbId", "digest", "lastModified",
    "md5sum", "mimeType", "sha256sum", "size", "status", "uploaded", "uploadedTime",
    "arch", "binaryUri", "default", "extract", "fullName", "install", "installLocation", "language", "name",
    "origName", "params", "parentUri", "pkgBuildDate", "pkgFileDate", "release", "shortTag", "repositoryName",
    "sticky", "type", "uri", "version", "epoch",
    "deleted", "deltaLocation", "deltaModified", "distributionUri", "filesUri", "fromRepo", "headers", "inherited",
    "mirrorPath", "mirrorType", "modifiedFiles", "notModifiedFiles", "postunScripts", "preunScripts",
    "scannedInstanceId", "selected", "tag",
)
# ScannedPkgs extends UForgeObjects (`total`), then the wrapper of the repeated scannedPackage.
SCANNED_PACKAGES_ELEMENTS = ("total", "scannedPackages")
UFORGE_ERROR_ELEMENTS = ("localizedErrorMsg", "requestMethod", "requestUri", "statusCode", "timestamp")
LOCALIZED_MESSAGE_ELEMENTS = ("message", "messageId", "parameters")

WireValue = str | int | bool | dict | list


def wants_json() -> bool:
    """True when the client's Accept prefers JSON to XML; XML is the default."""
    if not has_request_context():
        return False
    accept = request.accept_mimetypes
    return accept.quality(JSON_TYPE) > accept.quality(XML_TYPE)


def xml_safe(text: str) -> str:
    """The text without the characters XML 1.0 cannot carry or would alter: C0/C1 controls (CR and LF included,
    which parsers normalise), lone surrogates, U+FFFE and U+FFFF. A hostile manifest name never breaks a document."""
    if text.isprintable():  # the usual case: nothing to drop (isprintable is False for every control)
        return text
    return "".join(ch for ch in text
                   if unicodedata.category(ch) not in ("Cc", "Cs") and ch not in "\ufffe\uffff")


def error_response(status: int, message: str, message_id: str, request_uri: str | None = None) -> Response:
    """A uforgeError body for the current request (the URI without its query string: it may carry a token), or
    for ``request_uri`` when the request is nginx reporting about a client's."""
    own = has_request_context() and not request_uri
    if request_uri:
        path: str | None = request_uri.split("?", 1)[0]
    else:
        path = request.path if own else None
    fields = {
        "localizedErrorMsg": wire_object({"message": message, "messageId": message_id}, LOCALIZED_MESSAGE_ELEMENTS),
        "requestMethod": request.method if own else None,  # optional in the schema; nginx's report does not say
        "requestUri": _printable(path) if path is not None else None,
        "statusCode": status,
        "timestamp": format_timestamp(datetime.now(UTC), milliseconds=True),
    }
    return _render("uforgeError", wire_object(fields, UFORGE_ERROR_ELEMENTS), status, wants_json())


def scanned_packages_response(packages: Sequence[Mapping[str, object]], as_json: bool) -> Response:
    """The scannedPackages listing object (README, the listing); each package a mapping of ScannedPkg element names."""
    listing = {
        "total": len(packages),
        "scannedPackages": {"scannedPackage": [wire_object(p, SCANNED_PACKAGE_ELEMENTS) for p in packages]},
    }
    return _render("scannedPackages", wire_object(listing, SCANNED_PACKAGES_ELEMENTS), 200, as_json)


def wire_object(fields: Mapping[str, object], order: Sequence[str]) -> dict[str, WireValue]:
    """The fields in schema order, without empty ones, values in their wire form (the same for XML and JSON):
    integers stay numbers, datetimes become xs:dateTime strings, strings lose what XML cannot carry."""
    position = _positions(tuple(order))
    unknown = fields.keys() - position.keys()
    if unknown:
        raise ValueError(f"not elements of this UForge type: {sorted(unknown)}")
    wire: dict[str, WireValue] = {}
    for name in sorted(fields, key=position.__getitem__):
        value = _wire_value(fields[name])
        if value is not None and value != "":
            wire[name] = value
    return wire


@functools.cache  # a handful of orders, each used for every package of every listing
def _positions(order: tuple[str, ...]) -> dict[str, int]:
    return {name: index for index, name in enumerate(order)}


def _wire_value(value: object) -> WireValue | None:
    if isinstance(value, datetime):
        return format_timestamp(value, milliseconds=value.microsecond != 0)
    if isinstance(value, str):
        return xml_safe(value)
    return value  # type: ignore[return-value] - int, bool, None, or a nested object already in wire form


def _render(name: str, wire: Mapping[str, WireValue], status: int, as_json: bool) -> Response:
    if as_json:
        return Response(json.dumps({name: wire}, separators=(",", ":"), ensure_ascii=False), status,
                        content_type=JSON_TYPE)
    return Response(xml_document(name, wire), status, content_type=XML_TYPE)


def xml_document(name: str, wire: Mapping[str, WireValue]) -> bytes:
    """The object as XML: the root in UForge's namespace, unqualified children (the schema's elementFormDefault), a
    list repeating its element. Byte for byte what ElementTree writes for the same tree (tests/test_uforge_wire.py
    compares them), written directly: ElementTree's serializer is pure Python and was ~40% of a listing (13 ms for
    200 packages)."""
    parts = ["<?xml version='1.0' encoding='utf-8'?>\n"]
    _write(parts, f"ns0:{name}", wire, f' xmlns:ns0="{UFORGE_NS}"')
    return "".join(parts).encode("utf-8")


def _write(parts: list[str], tag: str, value: WireValue, attributes: str = "") -> None:
    if isinstance(value, Mapping):
        opened = len(parts)
        parts.append(f"<{tag}{attributes}>")
        for key, child in value.items():
            for item in child if isinstance(child, list) else [child]:
                _write(parts, key, item)
        if len(parts) == opened + 1:  # no child at all (an empty object, or only empty lists)
            parts[opened] = f"<{tag}{attributes} />"
        else:
            parts.append(f"</{tag}>")
        return
    text = ("true" if value else "false") if isinstance(value, bool) else str(value)
    if not text:
        parts.append(f"<{tag}{attributes} />")
    elif "&" in text or "<" in text or ">" in text:
        parts.append(f"<{tag}{attributes}>{text.replace('&', '&amp;').replace('<', '&lt;').replace('>', '&gt;')}"
                     f"</{tag}>")
    else:
        parts.append(f"<{tag}{attributes}>{text}</{tag}>")


def element_tree_document(name: str, wire: Mapping[str, WireValue]) -> bytes:
    """The same document through ElementTree (the reference xml_document is tested against)."""
    root = ET.Element(f"{{{UFORGE_NS}}}{name}")
    _append(root, wire)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def _append(parent: ET.Element, wire: Mapping[str, WireValue]) -> None:
    for key, value in wire.items():
        for item in value if isinstance(value, list) else [value]:
            child = ET.SubElement(parent, key)
            if isinstance(item, Mapping):
                _append(child, item)
            elif isinstance(item, bool):
                child.text = "true" if item else "false"
            else:
                child.text = str(item)


def _printable(path: str) -> str:
    """Percent-encode what XML 1.0 cannot carry (control characters) and anything non-ASCII, keep the rest."""
    return quote(path, safe="/:@!$&'()*+,;=-._~%")
