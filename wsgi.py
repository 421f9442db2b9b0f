"""WSGI entry point: ``SHARQ_CONFIG=config/sharq.conf gunicorn -k gevent wsgi:app``.

It uses the Redis the config names (127.0.0.1:6379 by default); only `sharq-server`
starts an embedded one. Every scrape of /metrics/ sums the counters of all the
workers: unless PROMETHEUS_MULTIPROC_DIR is set, the workers share a directory of
the master's (set before prometheus_client is imported).
"""

from sharq_server.process_metrics import share_process_metrics

share_process_metrics()

from sharq_server import create_app, start_requeue_loop  # noqa: E402

app = create_app()
start_requeue_loop(app)
