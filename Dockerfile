FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

COPY pyproject.toml README.md ./
# the Python client (sharq-worker) is its own distribution, which the server requires;
# clients/ also holds the build backend of the server (pyproject.toml, backend-path)
COPY clients ./clients
COPY sharq_core ./sharq_core
COPY sharq_server ./sharq_server
COPY config ./config
COPY wsgi.py ./
RUN pip install ./clients/python . && useradd --system --uid 10001 --home-dir /app sharq && mkdir /data && chown sharq /data

USER sharq
ENV SHARQ_HOST=0.0.0.0 SHARQ_PORT=8080 SHARQ_DATA_DIR=/data
EXPOSE 8080
VOLUME ["/data"]

# /deepstatus/ (Redis answers and takes writes) with SHARQ_HEALTHCHECK_TOKEN (a
# viewer token is enough) or with auth off; with auth on and no such token, / only.
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD python -c "import os, urllib.request as u; t = os.environ.get('SHARQ_HEALTHCHECK_TOKEN', ''); p = '/deepstatus/' if t or not os.environ.get('SHARQ_AUTH_TOKENS') else '/'; u.urlopen(u.Request('http://127.0.0.1:8080' + p, headers={'Authorization': 'Bearer ' + t}), timeout=2)"

# sharq-server runs gunicorn with gevent workers; with SHARQ_REDIS_URL unset it
# starts an embedded Redis persisted in /data.
CMD ["sharq-server"]
