"""The 304 reference: a bare Flask app that answers every package path with 304, under pkgdl's gunicorn.conf.py.

No auth, no catalog, no precondition logic: what Flask + gunicorn cost per request, nothing else.
"""

from flask import Flask, Response

app = Flask(__name__)
ETAG = '"' + "0" * 64 + '"'


@app.get("/healthz")
def healthz() -> Response:
    """Readiness probe for the harness."""
    return Response("ok\n", content_type="text/plain")


@app.get("/users/<uid>/scannedinstances/<siid>/scans/<sid>/packages/<pid>/bin")
def not_modified(uid: str, siid: str, sid: str, pid: str) -> Response:
    """Always 304, with the validator a real revalidation would repeat."""
    return Response(status=304, headers={"ETag": ETAG, "Cache-Control": "private, no-cache"})
