"""The compose file's example handler: logs each job. Replace it with yours.

`sharq-worker tasks:handle` calls `handle(job)` for every job: returning finishes
it, raising fails it (`raise Retry(after_ms=...)` retries it later).
"""

import logging

log = logging.getLogger("tasks")


def handle(job) -> None:
    log.info("job %s of queue %s: %r", job.job_id, job.queue_id, job.payload)
