"""Handlers `make bench` runs under `sharq-worker` (run from this folder)."""


def noop(job: object) -> None:
    """Do nothing: the bench measures SharQ, not the work."""
