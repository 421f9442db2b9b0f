"""WSGI entry point: ``SHARQ_CONFIG=config/sharq.conf gunicorn -k gevent wsgi:app``."""

from sharq_server import create_app, start_requeue_loop

app = create_app()
start_requeue_loop(app)
