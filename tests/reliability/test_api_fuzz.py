"""schemathesis drives every API route over real HTTP from /api/v1/openapi.json: no answer is a
5xx, and every answer matches what the document says (status, content type, body, headers).

`make test` runs a quick, bounded pass; `API_FUZZ_EXAMPLES=500` runs a long one.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from clinic_bot.web.api.auth import create_token

NOW = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
EXAMPLES = int(os.environ.get("API_FUZZ_EXAMPLES") or 25)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


@pytest.fixture
def api(live_server, clock):
    """The live server with a token, its clock before the document's example dates."""
    clock.set(NOW)
    with live_server.runtime.db.transaction() as s:
        live_server.http.headers["Authorization"] = f"Bearer {create_token(s, 'fuzz', NOW)}"
    return live_server


def fuzz(case_strategy, session) -> None:
    """Send `EXAMPLES` generated requests of one operation; raise at the first bad answer."""

    @given(case=case_strategy)
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case):
        # The session's token, not one generated from the security scheme (that is a 401).
        auth = {"Authorization": session.headers["Authorization"]}
        case.call_and_validate(session=session, headers=auth, checks=CHECKS)

    run()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_route_answers_without_5xx_and_as_documented(api, mode):
    schema = schemathesis.openapi.from_url(f"{api.base_url}/api/v1/openapi.json")
    failures, tried = {}, []
    for result in schema.get_all_operations():
        operation = result.ok()
        tried.append(operation.label)
        try:
            fuzz(operation.as_strategy(generation_mode=mode), api.http)
        except Exception as exc:  # every operation runs; the report names each that failed
            failures[operation.label] = f"{type(exc).__name__}: {str(exc)[:2000]}"
    assert len(tried) == 18, tried  # every route of the document
    assert failures == {}
