"""The OpenAPI document matches the app, and the live server honours it (Schemathesis)."""

from __future__ import annotations

import re

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from sharq_server import create_app
from sharq_server.openapi import document
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
