# The pkgdl app image (docker-compose.yml runs it as the app replicas and the one-shot seed/bucket services).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md gunicorn.conf.py ./
COPY app ./app
COPY storage_backends ./storage_backends
RUN pip install . \
    && useradd --system --home-dir /var/lib/pkgdl --shell /usr/sbin/nologin pkgdl \
    && mkdir -p /var/lib/pkgdl \
    && chown pkgdl:pkgdl /var/lib/pkgdl

# State (users file, var/secret_keys, var/demo-password) lives in the working directory: the defaults of
# PKGDL_USERS_FILE and PKGDL_SECRET_KEYS are <cwd>/var/..., shared through a volume with the seed service.
USER pkgdl
WORKDIR /var/lib/pkgdl
ENV PKGDL_BIND=0.0.0.0:8080
EXPOSE 8080

# Access log to stdout, errors and the audit lines to stderr: `docker logs` has both.
CMD ["gunicorn", "-c", "/app/gunicorn.conf.py"]
