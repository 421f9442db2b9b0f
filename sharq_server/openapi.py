"""The OpenAPI 3.1 description of the HTTP API, served at ``GET /openapi.json``.

Derived whole from the route table (`routes.ROUTES`) and the typed models of
`contract.py`: nothing here describes one route. `tests/test_openapi.py` checks it
names exactly the app's routes, that a client generator reads it without a
warning, and (Schemathesis) that the live server honours it.
"""

from __future__ import annotations

import functools
from typing import Any

from sharq_core import __version__

from . import contract
from .routes import IDENTIFIER, ROUTES, Query, Route

# The refusals any route may answer, shared through components/responses.
ERRORS = {
    400: ("BadRequest", "invalid input; nothing changed"),
    401: ("Unauthorized", "missing or wrong bearer token (when auth_tokens is set)"),
    403: ("Forbidden", "the token's role (or its queue types) does not allow this request"),
    404: ("NotFound", "not found"),
    413: ("TooLarge", "request body too large"),
    503: (
        "Unavailable",
        "Redis unavailable or refusing writes, or fewer replicas than `wait_replicas` confirmed the change"
        " (`reason`); whether the request took effect is unknown",
    ),
}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _answer(route: Route) -> dict[str, Any]:
    """The success response: JSON, or the media types the route serves instead."""
    if route.media == ("application/json",):
        return _json(route.answer, route.summary)
    text = {"schema": {"type": "string"}}
    content = {media: {"schema": route.answer} if media == "application/json" else text for media in route.media}
    return {"description": route.summary, "content": content}


def _responses(route: Route, refs: dict[type, dict[str, Any]]) -> dict[str, Any]:
    responses: dict[str, Any] = {str(route.status): _answer(route)}
    if route.action != "open":
        responses |= {str(code): {"$ref": f"#/components/responses/{name}"} for code, (name, _) in ERRORS.items()}
    for code, (description, model) in route.refusals.items():
        responses[str(code)] = _json(refs[model], description)
    return responses


def _parameter(query: Query) -> dict[str, Any]:
    if query.choices:
        schema: dict[str, Any] = {"enum": list(query.choices)}
    else:
        schema = {"type": "integer", "minimum": query.minimum, "maximum": query.maximum}
        if query.default is not None:
            schema["default"] = query.default
    return {"name": query.name, "in": "query", "required": False, "schema": schema}


def _path_parameters(path: str) -> list[dict[str, Any]]:
    names = [part[1:-1] for part in path.split("/") if part.startswith("{")]
    return [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"} if name == "asset" else IDENTIFIER}
        for name in names
    ]


def _operation(route: Route, refs: dict[type, dict[str, Any]]) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": route.operation_id,
        "summary": route.summary,
        "responses": _responses(route, refs),
    }
    parameters = _path_parameters(route.path) + [_parameter(query) for query in route.query]
    if parameters:
        operation["parameters"] = parameters
    if route.body is not None:
        media = {"application/json": {"schema": refs[route.body]}}
        operation["requestBody"] = {"required": route.body_required, "content": media}
    if route.action == "open":
        operation["security"] = [{}]
    return operation


def _components() -> tuple[dict[type, dict[str, Any]], dict[str, Any]]:
    models = list(dict.fromkeys([*contract.ANSWERS, *(route.body for route in ROUTES.values() if route.body)]))
    references, schemas = contract.schemas(models)
    error = references[models.index(contract.Error)]
    responses = {name: _json(error, why) for name, why in ERRORS.values()}
    components = {
        "schemas": schemas,
        "responses": responses,
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
    }
    return dict(zip(models, references, strict=True)), components


@functools.cache
def document() -> dict[str, Any]:
    """The whole OpenAPI 3.1 document, built once per process."""
    refs, components = _components()
    paths: dict[str, Any] = {}
    for route in ROUTES.values():
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, refs)
    return {
        "openapi": "3.1.0",
        "info": {"title": "SharQ", "version": __version__, "description": "Rate-limited, multi-tenant job queue."},
        "components": components,
        "security": [{}, {"bearer": []}],
        "paths": paths,
    }
