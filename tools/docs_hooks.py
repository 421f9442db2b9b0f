"""MkDocs hooks: the pages that are generated from the code, so they are never written twice.

- ``<!-- generated: http-api -->`` becomes the HTTP reference, rendered from the very
  OpenAPI document the server serves at ``GET /openapi.json`` (`sharq_server.openapi`),
  and the site carries a copy of that document as ``openapi.json``;
- ``<!-- generated: alerts -->`` becomes the table of the alert rules shipped in
  deploy/prometheus/sharq-alerts.yml, read from that file;
- ``<!-- generated: configuration -->`` becomes the table of every option of the typed
  configuration (`sharq_core.config`): its section, environment variable and default
  come from the dataclasses, its meaning from `DESCRIPTIONS` below or else from its
  comment in config/sharq.conf, and an option described in neither stops the build.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from typing import Any

import yaml
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

from sharq_core import config as sharq_config
from sharq_server.openapi import document

# What each option means; its name, type, default and environment come from the code.
DESCRIPTIONS = {
    "job_expire_interval": "ms a dequeued job may run before it goes back to its queue, unless touched "
    "(as SQS's visibility timeout)",
    "job_requeue_interval": "ms between two passes of the requeue loop",
    "default_job_requeue_limit": "`requeue_limit` when an enqueue gives none: -1 forever, 0 never, N at most N times",
    "dedupe_window_ms": "ms a finished job_id stays known, so enqueueing it again answers 409; 0 = off. "
    "About 100 bytes of Redis per job finished in the window",
    "campaign_retention_ms": "ms a done campaign's counts stay readable (`GET /campaigns/<type>/<id>/`), "
    "then its record is forgotten (see [Campaigns](campaigns.md))",
    "host": "address to listen on (`--host`)",
    "port": "port to listen on (`--port`)",
    "workers": (
        "gunicorn gevent worker processes (`--workers`); unset, one per CPU core the server may use "
        "(within a container's CPU quota, rounded up)"
    ),
    "accesslog": "access log: a file, `-` for stdout, `off` for none (opt-in, as gunicorn's)",
    "log_format": "`text` or `json`, one object a line (`--log-format`)",
    "auth_tokens": "comma-separated bearer tokens, each with an optional role and queue types; "
    "unset: no auth (see [Access control](deployment.md#access-control))",
    "max_body_size": "bytes; a larger request body is answered 413",
    "data_dir": "where the embedded Redis keeps its files (`--data-dir`)",
    "graceful_timeout": "s in-flight requests get on SIGTERM",
    "worker_connections": "connections one gunicorn worker serves at once; long polls may park on 90% of them",
    "url": "`redis://[user:password@]host:port/db`, `rediss://…` (TLS) or `unix:///path?db=0` (`--redis-url`)",
    "db": "database number",
    "username": "ACL user (Redis 6+)",
    "password": "password",
    "conn_type": "`tcp_sock` or `unix_sock`",
    "unix_socket_path": "the socket, with `conn_type = unix_sock`",
    "key_prefix": "prefix of every key SharQ writes",
    "clustered": "Redis Cluster: host and port (or URL) of any node",
    "socket_timeout": "s; Redis trouble is answered 503 within it",
    "appendfsync": "embedded Redis only: `always` puts every acknowledged write on disk first",
    "autopipeline": "under gevent, one shared Redis connection per worker (see [Performance](performance.md))",
    "wait_replicas": "answer a change 2xx only once this many replicas hold it (Redis `WAIT`; "
    "see [Durability](cluster-durability.md#durability-what-a-2xx-promises))",
    "wait_timeout_ms": (
        'ms to wait for them; a shortfall answers 503 `"reason":"replicas"` for enqueues and settings; '
        "takes and acknowledgements are answered all the same"
    ),
}
_SECTIONS = (
    ("sharq", "How jobs behave.", sharq_config.Config, "SHARQ_"),
    ("sharq-server", "The HTTP server.", sharq_config.ServerSettings, "SHARQ_"),
    ("redis", "Where Redis is and how to talk to it.", sharq_config.RedisSettings, "SHARQ_REDIS_"),
)
_DERIVED = {"embedded"}  # set by SharQ itself, never by the file
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_CONF = os.path.join(_ROOT, "config", "sharq.conf")
_CONF_OPTION = re.compile(r"^;?\s*(\w+)\s*:[^;]*;\s*(.+?)\s*$")


def _conf_comments() -> dict[tuple[str, str], str]:
    """(section, option) -> the comment config/sharq.conf gives it."""
    comments: dict[tuple[str, str], str] = {}
    section = ""
    with open(_CONF) as conf:
        for line in conf:
            header = re.match(r"^\[([\w-]+)\]", line)
            if header:
                section = header.group(1)
            option = _CONF_OPTION.match(line)
            if option and section:
                comments.setdefault((section, option.group(1)), option.group(2))
    return comments


def _default(field: dataclasses.Field) -> str:
    value = field.default if field.default is not dataclasses.MISSING else None
    if value in ("", (), None):
        return "—"
    if isinstance(value, bool):
        return str(value).lower()
    return f"`{value}`"


def configuration_table() -> str:
    """One table per section of the INI file, from the dataclasses of `sharq_core.config`."""
    out: list[str] = []
    missing = []
    comments = _conf_comments()
    for section, title, cls, prefix in _SECTIONS:
        out += [f"### `[{section}]`", "", title, ""]
        out += ["| option | environment | default | meaning |", "|---|---|---|---|"]
        for field in dataclasses.fields(cls):
            if field.name in _DERIVED or dataclasses.is_dataclass(field.default_factory):  # type: ignore[arg-type]
                continue
            meaning = DESCRIPTIONS.get(field.name) or comments.get((section, field.name))
            if not meaning:
                missing.append(f"[{section}] {field.name}")
                continue
            env = prefix + field.name.upper()
            out.append(f"| `{field.name}` | `{env}` | {_default(field)} | {meaning} |")
        out.append("")
    if missing:
        raise ValueError(f"describe the options {', '.join(missing)} in config/sharq.conf (or tools/docs_hooks.py)")
    return "\n".join(out)


# -- the HTTP reference ------------------------------------------------------------------


def _resolve(spec: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """Follow ``$ref`` to the component it names."""
    while "$ref" in node:
        target: Any = spec
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part]
        node = target
    return node


def _schema_name(schema: dict[str, Any]) -> str:
    """A short type for a schema: a component's name links to it."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        return f"[{name}](#{name.lower()})"
    if "anyOf" in schema or "oneOf" in schema:
        options = [_schema_name(s) for s in schema.get("anyOf", schema.get("oneOf"))]
        return " or ".join(options)
    if "enum" in schema:
        return " \\| ".join(f"`{json.dumps(v)}`" for v in schema["enum"])
    if "const" in schema:
        return f"`{json.dumps(schema['const'])}`"
    kind = schema.get("type", "any JSON")
    if kind == "array":
        return f"array of {_schema_name(schema.get('items', {}))}"
    if kind == "object" and "properties" in schema:
        fields = ", ".join(f"`{name}`" for name in schema["properties"])
        return f"object ({fields})"
    bounds = []
    if "minimum" in schema:
        bounds.append(f"≥ {schema['minimum']}")
    if "maximum" in schema:
        bounds.append(f"≤ {schema['maximum']}")
    if "pattern" in schema:
        bounds.append(f"`{schema['pattern']}`")
    return str(kind) + (f" ({', '.join(bounds)})" if bounds else "")


def _description(schema: dict[str, Any]) -> str:
    if "description" in schema:
        return schema["description"]
    for option in schema.get("anyOf", []):
        if "description" in option:
            return option["description"]
    return ""


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _operation(spec: dict[str, Any], method: str, path: str, operation: dict[str, Any]) -> list[str]:
    out = [f"### `{method.upper()} {path}`", "", f"`{operation['operationId']}`: {operation['summary']}", ""]
    parameters = operation.get("parameters", [])
    if parameters:
        out += ["| parameter | in | type |", "|---|---|---|"]
        out += [f"| `{p['name']}` | {p['in']} | {_cell(_schema_name(p['schema']))} |" for p in parameters]
        out.append("")
    body = operation.get("requestBody")
    if body:
        schema = body["content"]["application/json"]["schema"]
        required = "" if body.get("required") else " (optional)"
        out += [f"Body{required}: {_schema_name(schema)}", ""]
    out += ["| status | answer |", "|---|---|"]
    shared = []
    for status, response in operation["responses"].items():
        if "$ref" in response:  # one of the refusals every route may answer
            shared.append(status)
            continue
        content = response.get("content", {})
        shapes = [_schema_name(c["schema"]) for c in content.values() if "schema" in c]
        shape = f" — {' / '.join(shapes)}" if shapes else ""
        out.append(f"| {status} | {_cell(response['description'] + shape)} |")
    if shared:
        out.append(f"| {', '.join(sorted(shared))} | the [common errors](#common-errors) |")
    return [*out, ""]


def _component(name: str, schema: dict[str, Any]) -> list[str]:
    out = [f"### {name}", ""]
    if schema.get("description"):
        out += [schema["description"], ""]
    properties = schema.get("properties", {})
    if properties:
        required = set(schema.get("required", []))
        out += ["| field | type | required | meaning |", "|---|---|---|---|"]
        for field, sub in properties.items():
            mark = "yes" if field in required else ""
            out.append(f"| `{field}` | {_cell(_schema_name(sub))} | {mark} | {_cell(_description(sub))} |")
    else:
        out.append(_schema_name(schema))
    return [*out, ""]


def _shared_statuses(spec: dict[str, Any]) -> dict[str, str]:
    """Status -> name of the shared response, as the operations refer to them."""
    found: dict[str, str] = {}
    for methods in spec["paths"].values():
        for operation in methods.values():
            for status, response in operation["responses"].items():
                if "$ref" in response:
                    found[status] = response["$ref"].rsplit("/", 1)[1]
    return found


def http_reference(spec: dict[str, Any]) -> str:
    out = [
        "## Common errors",
        "",
        "Any route but `GET /` and the dashboard's may answer these, with an [Error](#error) body:",
        "",
        "| status | when |",
        "|---|---|",
    ]
    for name, response in spec["components"]["responses"].items():
        status = next(code for code, ref in _shared_statuses(spec).items() if ref == name)
        out.append(f"| {status} | {_cell(response['description'])} |")
    out += ["", "## Operations", ""]
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            out += _operation(spec, method, path, operation)
    out += ["## Shapes", "", "The bodies and answers named above, shared under `components/schemas`.", ""]
    for name, schema in spec["components"]["schemas"].items():
        out += _component(name, schema)
    return "\n".join(out)


# -- the shipped alert rules -------------------------------------------------------------

_RULES = os.path.join(_ROOT, "deploy", "prometheus", "sharq-alerts.yml")
_TEMPLATE = re.compile(r"\{\{\s*\$labels\.(\w+)\s*\}\}|\{\{[^}]*\}\}")


def _untemplated(text: str) -> str:
    """An annotation as a reader of the table reads it: `{{ $labels.x }}` as <x>, values as N."""
    return _TEMPLATE.sub(lambda m: f"<{m.group(1)}>" if m.group(1) else "N", text)


def alerts_table() -> str:
    with open(_RULES) as rules:
        groups = yaml.safe_load(rules)["groups"]
    alerts = [rule for group in groups for rule in group["rules"] if "alert" in rule]
    records = [rule["record"] for group in groups for rule in group["rules"] if "record" in rule]
    out = ["| alert | fires when | for | severity |", "|---|---|---|---|"]
    for rule in alerts:
        annotations = rule.get("annotations", {})
        when = _untemplated(annotations.get("description") or annotations.get("summary", ""))
        severity = rule.get("labels", {}).get("severity", "")
        out.append(f"| `{rule['alert']}` | {_cell(when)} | {rule.get('for', 'at once')} | {severity} |")
    out += ["", "Recording rules: " + ", ".join(f"`{name}`" for name in records) + "."]
    return "\n".join(out)


# -- MkDocs events -----------------------------------------------------------------------


def on_files(files: Files, config: MkDocsConfig) -> Files:
    files.append(File.generated(config, "openapi.json", content=json.dumps(document(), indent=2)))
    return files


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    if "<!-- generated: http-api -->" in markdown:
        markdown = markdown.replace("<!-- generated: http-api -->", http_reference(document()))
    if "<!-- generated: alerts -->" in markdown:
        markdown = markdown.replace("<!-- generated: alerts -->", alerts_table())
    if "<!-- generated: configuration -->" in markdown:
        markdown = markdown.replace("<!-- generated: configuration -->", configuration_table())
    return markdown
