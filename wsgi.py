"""WSGI entry point: ``SHARQ_CONFIG=config/sharq.conf gunicorn -k gevent wsgi:app``.

It uses the Redis the config names (127.0.0.1:6379 by default); only `sharq-server`
starts an embedded one.
"""

from sharq_server import create_app, start_requeue_loop

app = create_app()
start_requeue_loop(app)
