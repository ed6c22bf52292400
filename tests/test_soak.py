"""`make soak`'s log checks (bench/soak.py), which must not pass by missing what they look for: a token handed out
found whole or by its signature, in any log the stack writes; a 500 in either access log format."""

from __future__ import annotations

from pathlib import Path

from app.tokens import PackageRef, TokenService
from bench.soak import log_files, statuses_500, tokens_in_logs

TOKEN = TokenService(["soak-test-key"], 3600).mint(PackageRef("soak", 1, 1, 7))
NGINX_ERROR = ('2026/11/27 21:51:29 [error] 1#1: *6 recv() failed (104: Connection reset by peer) while reading '
               'response header from upstream, client: 127.0.0.1, request: "GET /users/soak/scannedinstances/1/'
               'scans/1/packages/7/bin?downloadToken={} HTTP/1.1"\n')


def test_a_token_is_found_whole_by_its_signature_or_as_a_query(tmp_path: Path) -> None:
    (tmp_path / "nginx").mkdir()
    (tmp_path / "seaweedfs" / "logs").mkdir(parents=True)
    (tmp_path / "nginx" / "error.log").write_text(NGINX_ERROR.format(TOKEN))
    (tmp_path / "app1.audit.log").write_text(f"link mentioned: x{TOKEN.rsplit('.', 1)[-1]}.\n")
    (tmp_path / "app2.access.log").write_text('{"path": "/users/soak/bin?downloadToken=elsewhere"}\n')
    (tmp_path / "seaweedfs" / "logs" / "weed.vm.root.log.INFO.20261127-220008.1417").write_text("clean\n")
    (tmp_path / "redis.log").write_text("clean\n")
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "package.rpm").write_bytes(b"not a log")
    files = log_files(tmp_path)
    assert tmp_path / "files" / "package.rpm" not in files
    assert tmp_path / "seaweedfs" / "logs" / "weed.vm.root.log.INFO.20261127-220008.1417" in files
    found = tokens_in_logs(files, {TOKEN})
    assert found == {str(tmp_path / "nginx" / "error.log"): 1, str(tmp_path / "app1.audit.log"): 1,
                     str(tmp_path / "app2.access.log"): 1}


def test_clean_logs_and_other_tokens_pass(tmp_path: Path) -> None:
    other = TokenService(["soak-test-key"], 3600).mint(PackageRef("soak", 1, 1, 8))
    (tmp_path / "app1.audit.log").write_text(f'{{"who": "token:abc", "note": "{other}"}}\n')
    assert tokens_in_logs(log_files(tmp_path), {TOKEN}) == {}


def test_a_500_is_found_in_nginx_and_gunicorn_access_logs(tmp_path: Path) -> None:
    (tmp_path / "access.log").write_text(
        '127.0.0.1 [2026-11-27T22:00:41+00:00] "GET /users/soak/x/bin HTTP/1.1" 503 455 2.017 "ua" upstream=a\n'
        '127.0.0.1 [2026-11-27T22:00:42+00:00] "GET /users/soak/x/bin HTTP/1.1" 500 455 2.017 "ua" upstream=a\n')
    (tmp_path / "app1.access.log").write_text('{"status":200,"path":"/x"}\n{"status":500,"path":"/y"}\n'
                                              '{"status":500,"path":"/z"}\n')
    (tmp_path / "app1.error.log").write_text('" 500 in an error log is not an answer\n')
    assert statuses_500(log_files(tmp_path)) == {str(tmp_path / "access.log"): 1,
                                                 str(tmp_path / "app1.access.log"): 2}
