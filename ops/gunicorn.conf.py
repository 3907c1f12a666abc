"""gunicorn settings for the crds-events web app (read-mostly, threaded workers).

    CRDS_EVENTS_ROOT=/srv/crds-events gunicorn -c ops/gunicorn.conf.py \
        crds_events.web.gunicorn_app:application

Every value can be overridden on the command line or with GUNICORN_CMD_ARGS.
"""

import multiprocessing
import os

# Behind a reverse proxy (nginx/httpd terminating TLS) on the same host.
bind = os.environ.get("CRDS_EVENTS_WEB_BIND", "127.0.0.1:8000")

# Threaded workers: requests mostly wait on SQLite reads and file downloads (I/O), so
# threads share one process's caches (loaded contexts) and a few processes use the cores.
worker_class = "gthread"
workers = int(os.environ.get("CRDS_EVENTS_WEB_WORKERS", min(4, multiprocessing.cpu_count())))
threads = int(os.environ.get("CRDS_EVENTS_WEB_THREADS", 8))

# Large reference uploads and `crds sync` downloads of big files take time.
timeout = 300
graceful_timeout = 30
keepalive = 5
# Recycle workers now and then (bounded memory for cached contexts).
max_requests = 5000
max_requests_jitter = 500

# The app opens its database on the first request of each worker (never in the master),
# so preloading only saves import time.
preload_app = True

# Logs to stdout/stderr: journald (systemd) collects them.
accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("CRDS_EVENTS_LOG_LEVEL", "info").lower()
forwarded_allow_ips = "127.0.0.1"
proxy_protocol = False
