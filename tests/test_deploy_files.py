"""The deployment files: docker-compose.yml validates, the rendered nginx template passes `nginx -t`, no query
string is ever logged, and the renderer refuses what it does not know."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.processes import Nginx, find_binary, free_port
from deploy.render_nginx import OPTIONAL, TEMPLATE, VARIABLES, render

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"


def _values(tmp_path: Path) -> dict[str, str]:
    return Nginx("nginx", tmp_path, free_port(), ("127.0.0.1:1", "127.0.0.1:2"), tmp_path / "packages").values()


def test_compose_file_validates_against_the_compose_spec():
    checker = shutil.which("check-jsonschema", path=str(Path(sys.executable).parent)) or shutil.which(
        "check-jsonschema")
    if checker is None:
        pytest.skip("check-jsonschema is not installed (pip install check-jsonschema, part of the test extra)")
    result = subprocess.run([checker, "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_nginx_gives_every_template_variable():
    yaml = pytest.importorskip("ruamel.yaml", reason="ruamel.yaml comes with check-jsonschema")
    compose = yaml.YAML(typ="safe").load(COMPOSE.read_text())
    nginx = compose["services"]["nginx"]
    environment = {name: str(value) for name, value in nginx["environment"].items()}
    render({name: value for name, value in environment.items() if name in VARIABLES})  # raises if one is missing
    assert environment["NGINX_ENVSUBST_OUTPUT_DIR"] == "/etc/nginx"
    assert "./deploy/nginx.conf.template:/etc/nginx/templates/nginx.conf.template:ro" in nginx["volumes"]
    assert compose["services"]["app"]["deploy"]["replicas"] == 2
    redis_command = " ".join(compose["services"]["redis"]["command"])
    assert "--appendonly yes" in redis_command and "--maxmemory-policy noeviction" in redis_command


def test_rendered_template_passes_nginx_t(tmp_path):
    binary = find_binary("nginx", "/usr/sbin/nginx")
    if binary is None:
        pytest.skip("nginx binary not found (apt-get install nginx-light)")
    nginx = Nginx(binary, tmp_path, free_port(), ("127.0.0.1:1", "127.0.0.1:2"), tmp_path / "packages")
    result = nginx.test_conf()
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


def test_template_logs_no_query_string():
    template = TEMPLATE.read_text()
    formats = re.findall(r"log_format\s+\w+\s+((?:'[^']*'\s*)+);", template)
    assert formats, "the template defines its own log format"
    for log_format in formats:
        assert "$uri" in log_format
        for variable in ("$request ", "$request\"", "$request_uri", "$args", "$query_string", "$arg_",
                         "$is_args", "$http_referer"):
            assert variable not in log_format
    access_logs = re.findall(r"^\s*access_log\s+([^;]+);", template, re.M)
    assert access_logs and all(line.split()[-1] == "pkgdl" for line in access_logs)


def test_template_never_compresses():
    template = TEMPLATE.read_text()
    assert re.search(r"^\s*gzip off;", template, re.M)
    assert not re.search(r"^\s*gzip on;", template, re.M)


def test_render_refuses_unknown_and_missing_variables(tmp_path):
    values = _values(tmp_path)
    assert "${" not in render(values)
    with pytest.raises(ValueError, match="missing value for PKGDL_STORAGE_ROOT"):
        render({name: value for name, value in values.items() if name != "PKGDL_STORAGE_ROOT"})
    with pytest.raises(ValueError, match="unknown variable PKGDL_TYPO"):
        render({**values, "PKGDL_TYPO": "x"})
    with pytest.raises(ValueError, match="unknown variable PKGDL_OTHER"):
        render(values, template="listen ${PKGDL_OTHER};")


def test_render_defaults_what_a_local_deployment_need_not_set(tmp_path):
    """No S3 endpoint, logs, pid or temp directory: defaults; upstreams as plain host:port entries."""
    values = {name: value for name, value in _values(tmp_path).items() if name not in OPTIONAL}
    values["PKGDL_UPSTREAM_SERVERS"] = "10.0.0.5:8080, 10.0.0.6:8080"
    config = render(values)
    assert "server 10.0.0.5:8080; server 10.0.0.6:8080;" in config
    assert "access_log /dev/stdout pkgdl;" in config and "error_log /dev/stderr warn;" in config
    assert "proxy_pass http://127.0.0.1:9/;" in config
    assert render({**values, "PKGDL_UPSTREAM_SERVERS": "server app:8080 max_fails=2;"}).count("server app:8080") == 1
    with pytest.raises(ValueError, match="host:port entries"):
        render({**values, "PKGDL_UPSTREAM_SERVERS": "a:1; }"})


def test_metrics_are_not_public_through_nginx():
    template = TEMPLATE.read_text()
    block = template[template.index("location = /metrics"):]
    block = block[: block.index("}")]
    assert "deny all;" in block and "allow 127.0.0.1;" in block


def test_compose_takes_every_secret_from_the_env_file():
    """No credential is written in docker-compose.yml: S3's key and secret come from .env (`make compose-env`)."""
    text = COMPOSE.read_text()
    assert "pkgdl-demo-secret" not in text and "pkgdl-demo-key" not in text
    for name in ("PKGDL_S3_ACCESS_KEY", "PKGDL_S3_SECRET_KEY"):
        assert text.count(f"${{{name}:?run make compose-env first}}") == 2  # the app's options and S3's identity
    yaml = pytest.importorskip("ruamel.yaml", reason="ruamel.yaml comes with check-jsonschema")
    nginx = yaml.YAML(typ="safe").load(text)["services"]["nginx"]
    assert nginx["environment"]["PKGDL_NGINX_LISTEN"] == "443" and "127.0.0.1:8443:443" in nginx["ports"]
    assert nginx["environment"]["PKGDL_PUBLIC_URL"].startswith("${PKGDL_PUBLIC_URL:-https://")


def test_compose_env_makes_random_secrets_once_and_rotates_on_request(tmp_path, monkeypatch):
    from deploy import compose_env

    monkeypatch.setattr(compose_env, "ENV_FILE", tmp_path / ".env")
    monkeypatch.setattr(compose_env, "TLS_DIRECTORY", tmp_path / "tls")
    monkeypatch.setattr(compose_env, "ROOT", tmp_path)
    if shutil.which("openssl") is None:
        pytest.skip("openssl not found")
    assert compose_env.main([]) == 0
    first = (tmp_path / ".env").read_text()
    assert (tmp_path / ".env").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "tls" / "pkgdl.crt").is_file() and (tmp_path / "tls" / "pkgdl.key").stat().st_mode & 0o077 == 0
    assert compose_env.main([]) == 0 and (tmp_path / ".env").read_text() == first  # kept
    assert compose_env.main(["--rotate"]) == 0 and (tmp_path / ".env").read_text() != first
    secret = dict(line.split("=", 1) for line in first.splitlines() if "=" in line and not line.startswith("#"))
    assert len(secret["PKGDL_S3_SECRET_KEY"]) >= 40 and secret["PKGDL_S3_ACCESS_KEY"].startswith("pkgdl-")


def test_the_template_and_deploy_tls_agree_on_protocols_and_ciphers():
    from deploy.tls import TLS_CIPHERS, TLS_PROTOCOLS

    template = TEMPLATE.read_text()
    assert f"ssl_protocols {TLS_PROTOCOLS};" in template and f"ssl_ciphers {TLS_CIPHERS};" in template
