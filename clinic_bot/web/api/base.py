"""What every API route shares, declared once: flask-smorest's Blueprint and Api, set up so each
route's schemas validate *and* document it.

- bodies, queries and forms that fail their schema answer 400 (CONTRACT §5), never 422;
- every route needs a bearer token and its document lists the 401; an admin-only blueprint's
  routes need an admin token and list the 403 a reception token gets;
- every HTTP error inside a route answers in the CONTRACT's error shape;
- the document's paths are relative to its server `/api/v1`, as the contract names them.
"""

from __future__ import annotations

import json

from apispec import BasePlugin
from flask import Flask, request
from flask_smorest import Api
from flask_smorest import Blueprint as SmorestBlueprint
from flask_smorest.spec.plugins import FlaskPlugin
from webargs.flaskparser import FlaskParser, abort
from werkzeug.datastructures import CombinedMultiDict
from werkzeug.exceptions import HTTPException
from werkzeug.routing import IntegerConverter

from clinic_bot.web.api.auth import require_admin, require_token
from clinic_bot.web.api.errors import fail, handle_http_exception
from clinic_bot.web.api.schemas import DayOrInstant, ErrorSchema

PREFIX = "/api/v1"
# Ids are INTEGER columns: 32-bit on PostgreSQL (SQLite's go to 2^63-1). A larger id names no row.
MAX_ID = 2**31 - 1
ID = "id"  # the URL converter for ids: `<{ID}:appointment_id>`


class IdConverter(IntegerConverter):
    """A row id in a URL: digits only, documented as 1..2^31-1 (see `_ids_in_range`)."""

    def to_python(self, value: str) -> int:
        """The id; any longer run of digits is one past the largest (int() refuses 4300+)."""
        # Never refuse here: Werkzeug turns a converter's refusal into a 405 for some methods.
        return int(value) if len(value) <= 18 else MAX_ID + 1


def _id_parameter_schema(converter) -> dict:
    return {"type": "integer", "minimum": 1, "maximum": MAX_ID, "example": 1}


def _ids_in_range():
    # No database stores a larger id (SQLite and PostgreSQL would raise on it), so it names
    # nothing: 404.
    for name, value in (request.view_args or {}).items():
        if isinstance(value, int) and value > MAX_ID:
            fail(404, "not_found", f"no {name.removesuffix('_id')} with that id")


class ApiParser(FlaskParser):
    """webargs' Flask parser with the contract's 400 and a clear answer for bodies it cannot use."""

    DEFAULT_VALIDATION_STATUS = 400
    __location_map__ = {**FlaskParser.__location_map__, "multipart": "load_multipart"}

    def _raw_load_json(self, req):
        try:
            return super()._raw_load_json(req)
        except RecursionError:
            # json.loads recurses per nesting level; thousands of "[" would otherwise be a 500.
            abort(400, code="invalid_json", message="the JSON body is nested too deeply")
        except json.JSONDecodeError:
            raise  # webargs answers it (see _handle_invalid_json_error)
        except ValueError:
            # Python refuses integers of more than 4300 digits (sys.set_int_max_str_digits).
            abort(400, code="invalid_json", message="a number in the JSON body is too long")

    def _handle_invalid_json_error(self, error, req, *args, **kwargs):
        abort(400, exc=error, code="invalid_json", message="the body is not valid JSON")

    def load_json(self, req, schema):
        """The JSON body, which must be an object (a route without a body reads none)."""
        data = super().load_json(req, schema)
        if not isinstance(data, dict):
            abort(400, code="invalid_json", message="send a JSON object")
        return data

    def load_multipart(self, req, schema):
        """Form fields and files of a multipart/form-data body, read as one mapping."""
        return self._makeproxy(CombinedMultiDict([req.files, req.form]), schema)


class PathsPlugin(FlaskPlugin):
    """Paths in the document are relative to its server URL (`/api/v1`)."""

    def path_helper(self, rule, operations, parameters, **kwargs):
        """The Flask rule as an OpenAPI path, without the API's prefix."""
        path = super().path_helper(rule, operations, parameters, **kwargs)
        return path.removeprefix(PREFIX) or "/"


class SchemaRulesPlugin(BasePlugin):
    """Adds a schema's `openapi_rules` (its cross-field rules, e.g. `anyOf`) to its component."""

    def schema_helper(self, name, definition, **kwargs):
        """The rules declared on the marshmallow schema class, next to their validator."""
        schema = kwargs.get("schema")
        cls = schema if isinstance(schema, type) else type(schema)
        return dict(getattr(cls, "openapi_rules", None) or {})


class Blueprint(SmorestBlueprint):
    """An API module's routes; every one of them needs a bearer token and says so."""

    ARGUMENTS_PARSER = ApiParser()
    DEFAULT_LOCATION_CONTENT_TYPE_MAPPING = {
        **SmorestBlueprint.DEFAULT_LOCATION_CONTENT_TYPE_MAPPING,
        "multipart": "multipart/form-data",
    }

    def __init__(self, name: str, import_name: str, *, admin_only: bool = False, **kwargs):
        kwargs.setdefault("url_prefix", PREFIX)
        super().__init__(name, import_name, **kwargs)
        self.before_request(require_token)
        if admin_only:
            # The role is checked on the server for every route of the blueprint, like the
            # staff UI's admin pages: a reception token gets 403 whatever it asks.
            self.before_request(require_admin)
        self.before_request(_ids_in_range)
        self.register_error_handler(HTTPException, handle_http_exception)
        cbks = [self._prepare_auth_doc] + ([self._prepare_admin_doc] if admin_only else [])
        self._prepare_doc_cbks = [*self._prepare_doc_cbks, *cbks]

    @staticmethod
    def _prepare_auth_doc(doc, doc_info, **kwargs):
        """Document the 401 that `require_token` answers on every route."""
        doc.setdefault("responses", {}).setdefault("401", "UNAUTHORIZED")
        return doc

    @staticmethod
    def _prepare_admin_doc(doc, doc_info, **kwargs):
        """Document the 403 that `require_admin` answers to a reception token."""
        doc.setdefault("responses", {}).setdefault("403", "FORBIDDEN")
        return doc


class ClinicApi(Api):
    """flask-smorest's Api: the document at /api/v1/openapi.json; errors stay per blueprint."""

    ERROR_SCHEMA = ErrorSchema
    # Each route lists the errors it can answer; a catch-all `default` would hide a wrong one.
    DEFAULT_ERROR_RESPONSE_NAME = None

    def _register_error_handlers(self):
        # The app-wide HTTPException handler (app.py) serves HTML pages too; API blueprints
        # register `handle_http_exception` themselves (see Blueprint).
        return None

    def handle_http_exception(self, error):
        """smorest's error handler, in the CONTRACT's shape like the blueprints'."""
        return handle_http_exception(error)


def make_api(app: Flask) -> ClinicApi:
    """The Api object for this app, serving the document at /api/v1/openapi.json."""
    app.url_map.converters[ID] = IdConverter
    app.config.setdefault("OPENAPI_URL_PREFIX", PREFIX)
    app.config.setdefault("OPENAPI_JSON_PATH", "openapi.json")
    api = ClinicApi(
        app,
        spec_kwargs={
            "title": "clinic_bot API",
            "version": "1",
            "openapi_version": "3.0.3",
            "flask_plugin": PathsPlugin(),
            "extra_plugins": [SchemaRulesPlugin()],
            "info": {"description": "JSON API of the clinic's WhatsApp appointment assistant."},
            "servers": [{"url": PREFIX}],
            "security": [{"bearerAuth": []}],
        },
    )
    # A query bound takes a day or an instant: a plain string, not `format: date-time`.
    api.register_field(DayOrInstant, "string", None)
    api.register_converter(IdConverter, _id_parameter_schema)
    api.spec.components.security_scheme(
        "bearerAuth", {"type": "http", "scheme": "bearer", "description": "clinic-bot api-token"}
    )
    return api
