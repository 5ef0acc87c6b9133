"""The OpenAPI document at /api/v1/openapi.json, built with apispec from our marshmallow schemas.

API modules describe their own paths with `document(path, operations)` when they are
imported; the document is assembled on first request, once every module has registered.
"""

from __future__ import annotations

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import jsonify

from clinic_bot.web.api.blueprint import bp
from clinic_bot.web.api.schemas import ErrorSchema

_PATHS: list[tuple[str, dict, list]] = []
_SCHEMAS: dict[str, type] = {"Error": ErrorSchema}
_cache: dict | None = None


def document(path: str, operations: dict, *, schemas: dict | None = None, parameters=None):
    """Add an API path (as mounted under /api/v1) and the named schemas it refers to."""
    global _cache
    _PATHS.append((path, operations, list(parameters or [])))
    _SCHEMAS.update(schemas or {})
    _cache = None


def error_response(description: str) -> dict:
    """An operation response in the CONTRACT's error shape."""
    return {
        "description": description,
        "content": {"application/json": {"schema": "Error"}},
    }


def build_spec() -> dict:
    """The OpenAPI 3 document as a dict."""
    spec = APISpec(
        title="clinic_bot API",
        version="1",
        openapi_version="3.0.3",
        plugins=[MarshmallowPlugin()],
        info={"description": "JSON API of the clinic's WhatsApp appointment assistant."},
        servers=[{"url": "/api/v1"}],
        security=[{"bearerAuth": []}],
    )
    spec.components.security_scheme(
        "bearerAuth", {"type": "http", "scheme": "bearer", "description": "clinic-bot api-token"}
    )
    for name, schema in _SCHEMAS.items():
        spec.components.schema(name, schema=schema)
    for path, operations, parameters in _PATHS:
        spec.path(path=path, operations=operations, parameters=parameters)
    return spec.to_dict()


@bp.get("/openapi.json")
def openapi():
    """The OpenAPI document (served without a token)."""
    global _cache
    if _cache is None:
        _cache = build_spec()
    return jsonify(_cache)
