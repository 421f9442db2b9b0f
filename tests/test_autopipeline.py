"""AutoPipeline under gevent, in a patched child process (see autopipeline_probe.py)."""

from __future__ import annotations

import os
import subprocess
import sys


def test_autopipeline_under_gevent(redis_url: str, single_redis) -> None:
    probe = os.path.join(os.path.dirname(__file__), "autopipeline_probe.py")
    env = {**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(probe))}
    done = subprocess.run([sys.executable, probe, redis_url], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stdout + done.stderr
