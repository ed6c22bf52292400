"""One JSON audit line per download on the `pkgdl.audit` logger (standard error by default); never a secret."""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime

log = logging.getLogger("pkgdl.audit")


def audit_download(*, who: str, ids: dict, status: int, sent: int, started: float, result: str,
                   link: dict | None = None) -> None:
    """Write the audit line of one finished download (who is a login or `token:<jti>`; result is completed, aborted,
    sendfile (a whole small local file handed to the server) or offloaded to nginx; on the token path, `link` says
    whether the request claimed the link or resumed it, and why its end spent it)."""
    log.info(json.dumps({
        "time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "event": "download",
        "who": who,
        **ids,
        "status": status,
        "bytes": sent,
        "duration_ms": round((time.monotonic() - started) * 1000, 1),
        "result": result,
        **(link or {}),
    }, separators=(",", ":")))
