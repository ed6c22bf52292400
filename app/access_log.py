"""gunicorn's access log as one JSON object per request, without the query string (it may hold a token)."""

from __future__ import annotations

import functools
import json
import logging
import time

from gunicorn.glogging import Logger

# The environ key where the app puts the size of a body handed to the server's sendfile(2) (app/views.py).
SENDFILE_BYTES = "pkgdl.sendfile_bytes"

class JsonAccessLogger(Logger):
    """Writes `{"remote": ..., "path": ..., "status": ...}` lines to gunicorn's access log.

    The fields are gunicorn's atoms h t m U H s B D u a, read straight from the request: ``Logger.atoms`` also copies
    every request header, response header and environ entry into a dict, which cost more than the rest of a 304.
    Deliberately absent: the query string (q), the request line (r), the Referer (f) and any header.
    """

    def access(self, resp, req, environ, request_time) -> None:  # noqa: ANN001 - gunicorn's signature
        if not (self.cfg.accesslog or self.cfg.logconfig or self.cfg.logconfig_dict or self.cfg.syslog):
            return
        if not self.access_log.isEnabledFor(logging.INFO):
            return
        try:
            status = resp.status.split(None, 1)[0] if isinstance(resp.status, str) else resp.status
            sent = getattr(resp, "sent", None)
            if not sent and environ.get(SENDFILE_BYTES):  # a body gunicorn sent with sendfile(2) and did not count
                sent = environ[SENDFILE_BYTES]
            line = json.dumps({
                "remote": environ.get("REMOTE_ADDR", "-"),
                "time": _clf_now(),
                "method": environ.get("REQUEST_METHOD"),
                "path": environ.get("PATH_INFO"),
                "protocol": environ.get("SERVER_PROTOCOL"),
                "status": int(status) if str(status).isdigit() else None,
                "bytes": sent if isinstance(sent, int) else None,
                "duration_us": request_time.seconds * 1_000_000 + request_time.microseconds,
                "user": self._get_user(environ) or "-",
                "agent": environ.get("HTTP_USER_AGENT", "-"),
            }, separators=(",", ":"))
            # handle() of a ready record skips Logger.info's search of the call stack for a caller we never print.
            self.access_log.handle(self.access_log.makeRecord(self.access_log.name, logging.INFO, __file__, 0, line,
                                                              None, None))
        except Exception:  # noqa: BLE001 - gunicorn's own logger never lets logging break a response
            self.error("Failed to log access line")


def _clf_now() -> str:
    """The time as gunicorn's ``Logger.now`` writes it (Apache common log format), formatted once per second."""
    return _clf_second(int(time.time()))


@functools.lru_cache(maxsize=2)  # this second and the last: bounded, and thread-safe without a global of ours
def _clf_second(second: int) -> str:
    return time.strftime("[%d/%b/%Y:%H:%M:%S %z]", time.localtime(second))
