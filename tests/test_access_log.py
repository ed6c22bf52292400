"""The JSON access line: gunicorn's atoms for the fields we keep, nothing of the query string or the headers."""

from __future__ import annotations

import base64
import datetime
import io
import json
import logging
from types import SimpleNamespace

import pytest
from gunicorn.config import Config

from app.access_log import JsonAccessLogger

FIELDS = {"h": "remote", "t": "time", "m": "method", "U": "path", "H": "protocol", "s": "status", "B": "bytes",
          "D": "duration_us", "u": "user", "a": "agent"}


@pytest.fixture
def logger() -> tuple[JsonAccessLogger, io.StringIO]:
    config = Config()
    config.set("accesslog", "-")
    access_logger = JsonAccessLogger(config)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    access_logger.access_log.handlers = [handler]
    return access_logger, stream


def _exchange(authorization: str | None = None, status: str = "304 NOT MODIFIED", sent: int | None = 0):
    environ = {"REMOTE_ADDR": "10.0.0.7", "REQUEST_METHOD": "GET", "RAW_URI": "/users/u/x/bin?downloadToken=SECRET",
               "PATH_INFO": "/users/u/x/bin", "QUERY_STRING": "downloadToken=SECRET", "SERVER_PROTOCOL": "HTTP/1.1",
               "HTTP_USER_AGENT": "curl/8", "HTTP_REFERER": "https://mail/?downloadToken=SECRET"}
    if authorization:
        environ["HTTP_AUTHORIZATION"] = authorization
    request = SimpleNamespace(headers=[("USER-AGENT", "curl/8"), ("AUTHORIZATION", authorization or "")])
    response = SimpleNamespace(status=status, sent=sent, headers=[("ETag", '"abc"')])
    return response, request, environ, datetime.timedelta(seconds=1, microseconds=2345)


@pytest.mark.parametrize("authorization", [None, "Basic " + base64.b64encode(b"alice:pw").decode(), "Basic !!"])
def test_the_line_has_gunicorns_values_for_our_fields(logger, authorization) -> None:
    access_logger, stream = logger
    exchange = _exchange(authorization)
    access_logger.access(*exchange)
    line = json.loads(stream.getvalue())
    atoms = access_logger.atoms(*exchange)
    expected = {field: atoms[atom] for atom, field in FIELDS.items()}
    expected["status"] = int(expected["status"])
    logged_at = datetime.datetime.strptime(line.pop("time"), "[%d/%b/%Y:%H:%M:%S %z]")
    assert abs(logged_at - datetime.datetime.strptime(expected.pop("time"), "[%d/%b/%Y:%H:%M:%S %z]")).seconds <= 1
    assert line == expected
    assert line["user"] == ("alice" if authorization and "!!" not in authorization else "-")


def test_no_query_string_referer_or_header_reaches_the_log(logger) -> None:
    access_logger, stream = logger
    access_logger.access(*_exchange("Basic " + base64.b64encode(b"alice:pw").decode()))
    text = stream.getvalue()
    assert "SECRET" not in text and "downloadToken" not in text and "pw" not in text and "abc" not in text


def test_unknown_sizes_and_statuses_are_null(logger) -> None:
    access_logger, stream = logger
    access_logger.access(*_exchange(status="???", sent=None))
    line = json.loads(stream.getvalue())
    assert (line["status"], line["bytes"]) == (None, None)
