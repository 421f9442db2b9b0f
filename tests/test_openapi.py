"""The OpenAPI document matches the app, and the live server honours it (Schemathesis)."""

from __future__ import annotations

import inspect
import json
import os
import re
import shutil
import subprocess
import sys

import msgspec
import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from sharq_client import Client
from sharq_server import create_app
from sharq_server.openapi import document
from sharq_server.routes import ROUTES
from tests.support import ServerProcess


def _without_waits(spec: dict) -> dict:
    """No ?wait=: a long poll would outlast the call's timeout (tests/test_longpoll.py
    covers it)."""
    for item in spec["paths"].values():
        for operation in item.values():
            if isinstance(operation, dict) and "parameters" in operation:
                operation["parameters"] = [p for p in operation["parameters"] if p["name"] != "wait"]
    return spec


SCHEMA = schemathesis.openapi.from_dict(_without_waits(document()))


def test_document_lists_exactly_the_routes(config, redis_client) -> None:
    app = create_app(config)
    routes = {
        (re.sub(r"<(\w+)>", r"{\1}", rule.rule), method.lower())
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static"
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    documented = {
        (path, method) for path, item in document()["paths"].items() for method in item if method != "parameters"
    }
    assert routes == documented


def test_openapi_is_served(config, redis_client) -> None:
    response = create_app(config).test_client().get("/openapi.json")
    assert response.get_json() == document()


def test_operation_ids_are_unique_and_named_like_the_clients_methods() -> None:
    ids = [operation["operationId"] for item in document()["paths"].values() for operation in item.values()]
    assert len(ids) == len(set(ids))
    calls = {  # aliases (job for job_status, queue for queue_info) answer to their method's id
        name for name, call in inspect.getmembers(Client, inspect.isfunction)
        if not name.startswith("_") and call.__name__ == name
    }  # fmt: skip
    assert calls - {"clone", "close"} <= set(ids), calls - set(ids)


def test_a_client_generator_reads_the_served_document_without_warnings(config, redis_client, tmp_path) -> None:
    """openapi-python-client (as users' tooling would) names each call after its
    operationId and shares the error, job, limits and queue models."""
    tools = os.path.dirname(sys.executable)  # the generator, and the ruff it formats with
    generator = shutil.which("openapi-python-client", path=tools) or shutil.which("openapi-python-client")
    if generator is None:
        pytest.skip("openapi-python-client is not installed: pip install -e '.[test]'")
    spec = tmp_path / "openapi.json"
    spec.write_text(json.dumps(create_app(config).test_client().get("/openapi.json").get_json()))
    run = subprocess.run(
        [generator, "generate", "--path", str(spec), "--output-path", str(tmp_path / "client")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PATH": tools + os.pathsep + os.environ.get("PATH", "")},
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    assert "warning" not in output.lower() and "error" not in output.lower(), output
    package = tmp_path / "client" / "shar_q_client"
    calls = {path.stem for path in (package / "api" / "default").glob("*.py")} - {"__init__"}
    assert calls == {route.operation_id for route in ROUTES.values()}
    models = {path.stem for path in (package / "models").glob("*.py")}
    assert {"error", "dequeued_job", "effective_limits", "queue_view", "dead_letter"} <= models
    assert not [name for name in models if "error" in name and name not in ("error", "error_status")]


def _integer_bounds(model: type) -> dict[str, tuple[int, int]]:
    """The declared (minimum, maximum) of each integer field of a body model."""
    bounds = {}
    for field in msgspec.inspect.type_info(model).fields:
        kinds = field.type.types if isinstance(field.type, msgspec.inspect.UnionType) else (field.type,)
        for kind in kinds:
            integer = kind.type if isinstance(kind, msgspec.inspect.Metadata) else kind
            if isinstance(integer, msgspec.inspect.IntType):
                bounds[field.name] = (integer.ge, integer.le)
    return bounds


# fields whose real floor is the Redis clock's now (checked in Lua): their declared
# minimum is refused too, as the description says
NOT_BEFORE_NOW = {"expire_at"}


def test_declared_body_bounds_are_the_engines(config, redis_client) -> None:
    """Each integer field the document bounds is refused by the engine (400 naming
    it) just past either bound, and not refused at the bound: the document and
    the checks cannot drift apart unseen."""
    client = create_app(config).test_client()
    # valid for jobs, queues and types; a receipt (of no delivery) lets a real cost be given
    minimal = {"job_id": "j1", "payload": 1, "interval": 1, "receipt": "0123456789abcdef.0"}
    for route in ROUTES.values():
        if route.body is None:
            continue
        path = route.path.replace("{queue_type}", "bounds").replace("{queue_id}", "q1").replace("{job_id}", "j1")
        base = {name: value for name, value in minimal.items() if name in route.body.__struct_fields__}
        for name, (low, high) in _integer_bounds(route.body).items():
            for value, refused in ((low - 1, True), (high + 1, True), (low, False), (high, False)):
                if value == low and name in NOT_BEFORE_NOW:
                    continue
                answer = client.open(path, method=route.method, json={**base, name: value})
                message = (answer.get_json() or {}).get("message", "")
                assert (answer.status_code == 400 and name in message) == refused, (route.path, name, value, message)


@pytest.fixture(scope="module")
def live_server(tmp_path_factory):
    server = ServerProcess(str(tmp_path_factory.mktemp("schemathesis") / "data"), workers=1).start()
    yield server
    assert server.stop() == 0, server.log()
    assert "Traceback" not in server.log()


@pytest.mark.e2e
@SCHEMA.parametrize()
@settings(max_examples=25, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
def test_live_server_conforms(case, live_server) -> None:
    """No 5xx, and every response matches its documented status and schema.

    Not checked: that every schema-valid request is accepted. JSON Schema counts
    1.0 as an integer, while SharQ refuses floats for its integer fields (SPEC).
    """
    case.call_and_validate(
        base_url=live_server.url, timeout=10, excluded_checks=[schemathesis.checks.positive_data_acceptance]
    )
