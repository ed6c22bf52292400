"""gunicorn's access log as one JSON object per request, without the query string (it may hold a token)."""

from __future__ import annotations

import json

from gunicorn.glogging import Logger

# gunicorn atom -> our field. Deliberately absent: q (query), r (request line), f (Referer), {...}i (headers).
_FIELDS = {"h": "remote", "t": "time", "m": "method", "U": "path", "H": "protocol", "s": "status", "B": "bytes",
           "D": "duration_us", "u": "user", "a": "agent"}
_NUMBERS = {"status", "bytes", "duration_us"}


class JsonAccessLogger(Logger):
    """Writes `{"remote": ..., "path": ..., "status": ...}` lines to gunicorn's access log."""

    def access(self, resp, req, environ, request_time) -> None:  # noqa: ANN001 - gunicorn's signature
        if not (self.cfg.accesslog or self.cfg.logconfig or self.cfg.logconfig_dict or self.cfg.syslog):
            return
        atoms = self.atoms(resp, req, environ, request_time)
        line = {}
        for atom, field in _FIELDS.items():
            value = atoms.get(atom, "-")
            if field in _NUMBERS:
                value = int(value) if str(value).isdigit() else None
            line[field] = value
        try:
            self.access_log.info(json.dumps(line, separators=(",", ":")))
        except Exception:  # noqa: BLE001 - gunicorn's own logger never lets logging break a response
            self.error("Failed to log access line")
