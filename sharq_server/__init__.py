"""sharq_server: SharQ over HTTP (Flask on gunicorn + gevent).

`create_app` and `start_requeue_loop` are imported on first use, so the gunicorn
master (which imports this package) never loads redis-py before gevent patches
the workers.
"""

from typing import TYPE_CHECKING, Any

from sharq_core import __version__

if TYPE_CHECKING:
    from .app import create_app
    from .requeue import start_requeue_loop

__all__ = ["__version__", "create_app", "start_requeue_loop"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from .app import create_app

        return create_app
    if name == "start_requeue_loop":
        from .requeue import start_requeue_loop

        return start_requeue_loop
    raise AttributeError(name)
