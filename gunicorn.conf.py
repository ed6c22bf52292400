"""gunicorn settings for pkgdl: `gunicorn -c gunicorn.conf.py` needs no other argument."""

import os

wsgi_app = "app:create_app()"
bind = os.environ.get("PKGDL_BIND", "127.0.0.1:8080")
workers = int(os.environ.get("PKGDL_WORKERS", "2"))
threads = int(os.environ.get("PKGDL_THREADS", "8"))
# gthread: a long download does not block the worker's heartbeat, so `timeout` never kills a slow stream
# (sync workers are killed mid-download: gunicorn issues 1736, 3259), and keep-alive works.
worker_class = "gthread"
timeout = 60
graceful_timeout = 30
keepalive = 5
# Only the nginx hop may set X-Forwarded-Proto and friends.
forwarded_allow_ips = os.environ.get("PKGDL_FORWARDED_ALLOW_IPS", "127.0.0.1")
# Request line and header limits: ids are short, a token is < 200 characters.
limit_request_line = 4094
limit_request_fields = 64
limit_request_field_size = 8190

accesslog = os.environ.get("PKGDL_ACCESS_LOG", "-")
errorlog = os.environ.get("PKGDL_ERROR_LOG", "-")
# %(U)s is the path WITHOUT the query string: a downloadToken must never reach a log. No Referer either.
access_log_format = '%(h)s - %(u)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(L)s "%(a)s"'
