"""gunicorn settings for ``gunicorn -c config/gunicorn.conf.py wsgi:app``.

`sharq-server` sets the same itself; use this file when you run gunicorn directly
(in Docker, say) against a Redis configured through SHARQ_REDIS_URL. /metrics/
sums the HTTP and requeue figures of all workers: wsgi.py gives them a directory
of the master's in the temporary directory unless PROMETHEUS_MULTIPROC_DIR names one.
"""

import os

bind = f"{os.environ.get('SHARQ_HOST', '0.0.0.0')}:{os.environ.get('SHARQ_PORT', '8080')}"
workers = int(os.environ.get("SHARQ_WORKERS", "2"))
worker_class = "gevent"
worker_connections = int(os.environ.get("SHARQ_WORKER_CONNECTIONS", "1000"))  # the app reads the same
graceful_timeout = int(os.environ.get("SHARQ_GRACEFUL_TIMEOUT", "10"))
timeout = 30
keepalive = 5
accesslog = os.environ.get("SHARQ_ACCESSLOG") or None
proc_name = "sharq-server"
control_socket_disable = True  # gunicorn >= 25.1: no shared ~/.gunicorn/gunicorn.ctl


def worker_exit(server, worker):
    """Release the requeue lock if this worker holds it (wsgi.py started the loop)."""
    loop = getattr(worker, "wsgi", None) and worker.wsgi.extensions.get("sharq_requeue")
    if loop:
        loop.stop()


def child_exit(server, worker):
    """A dead worker's figures stop counting as live (prometheus_client multiprocess)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
