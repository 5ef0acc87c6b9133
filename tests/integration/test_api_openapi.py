"""The OpenAPI document at /api/v1/openapi.json: valid OpenAPI 3, its own examples accepted by
the API over real HTTP, every route's 401, the cross-field rules, text lengths and the phone
pattern."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
import requests
from openapi_spec_validator import validate

from clinic_bot.models import InboxEvent, OutboxMessage
from clinic_bot.web.api.auth import create_token

NOW = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)  # before every example date of the document
METHODS = ("get", "post", "patch", "put", "delete")


@pytest.fixture
def api(live_server, clock):
    clock.set(NOW)
    with live_server.runtime.db.transaction() as s:
        live_server.http.headers["Authorization"] = f"Bearer {create_token(s, 'docs', NOW)}"
        # A dead event and a dead message with id 1, which the admin examples retry.
        s.add(InboxEvent(dedupe_key="dead-1", kind="messages", payload={}, status="dead"))
        s.add(
            OutboxMessage(
                idempotency_key="dead-1",
                chat_id="4915112345678@s.whatsapp.net",
                endpoint="messages/text",
                body={"body": "hello"},
                fingerprint="f" * 64,
                status="dead",
            )
        )
    return live_server


@pytest.fixture
def doc(live_server) -> dict:
    r = requests.get(f"{live_server.base_url}/api/v1/openapi.json")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/json")
    return r.json()


def operations(doc: dict):
    """(path, method, operation) for every operation, in the document's order."""
    for path, item in doc["paths"].items():
        for method in METHODS:
            if method in item:
                yield path, method, item[method], item.get("parameters", [])


def resolve(doc: dict, node: dict) -> dict:
    while "$ref" in node:
        kind, name = node["$ref"].split("/")[-2:]
        node = doc["components"][kind][name]
    return node


def test_the_document_is_valid_openapi_3_served_without_a_token(doc):
    validate(doc)
    assert doc["openapi"].startswith("3.")
    assert doc["servers"] == [{"url": "/api/v1"}]
    assert doc["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"


def test_every_route_documents_its_401_and_answers_it_in_the_contract_shape(doc, live_server):
    ops = list(operations(doc))
    assert len(ops) == 18
    for path, method, op, params in ops:
        unauthorized = resolve(doc, op["responses"]["401"])
        schema = resolve(doc, unauthorized["content"]["application/json"]["schema"])
        assert "error" in schema["properties"], (method, path)
        url = live_server.base_url + "/api/v1" + _example_request(doc, path, op, params)["url"]
        r = requests.request(method, url, json={})
        assert r.status_code == 401, (method, path, r.status_code)
        assert r.json()["error"]["code"] == "unauthorized"


def _example_request(doc: dict, path: str, op: dict, params: list) -> dict:
    """The request an operation's examples make: path and query values, JSON or form body."""
    values = {}
    for p in params + op.get("parameters", []):
        p = resolve(doc, p)
        schema = p.get("schema", {})
        example = p.get("example", schema.get("example", (schema.get("enum") or [None])[0]))
        if example is not None:
            values[(p["in"], p["name"])] = example
    assert all(("path", n) in values for n in re.findall(r"{([^}]+)}", path)), path
    url = path
    for (where, name), value in values.items():
        if where == "path":
            url = url.replace("{" + name + "}", requests.utils.quote(str(value)))
    kw = {"params": {n: v for (where, n), v in values.items() if where == "query"}}
    content = op.get("requestBody", {}).get("content", {})
    if "application/json" in content:
        kw["json"] = content["application/json"]["example"]
    elif "multipart/form-data" in content:
        example = dict(content["multipart/form-data"]["example"])
        kw["files"] = {"file": ("example.ics", example.pop("file").encode(), "text/calendar")}
        kw["data"] = {k: str(v).lower() for k, v in example.items()}
    return {"url": url, **kw}


def test_the_documents_own_examples_are_accepted(api, doc):
    ops = list(operations(doc))
    # Creations first, so the examples' ids and phones name something.
    ops.sort(key=lambda o: not (o[1] == "post" and "{" not in o[0]))
    answers = []
    for path, method, op, params in ops:
        req = _example_request(doc, path, op, params)
        url = api.base_url + "/api/v1" + req.pop("url")
        r = api.http.request(method, url, **req)
        answers.append((method.upper(), path, r.status_code))
        assert 200 <= r.status_code < 300, (method, path, r.text)
        documented = {k for k in op["responses"] if k.startswith("2")}
        assert str(r.status_code) in documented, (method, path, r.status_code, documented)
    assert [a[:2] for a in answers[:3]] == [
        ("POST", "/appointments"),
        ("POST", "/broadcasts"),
        ("POST", "/calendar/imports"),
    ]


def test_the_phone_example_matches_the_documented_pattern_everywhere(doc):
    phones = []

    def walk(node):
        if isinstance(node, dict):
            if "pattern" in node and "example" in node and "whatsapp" in node["pattern"]:
                phones.append(node)
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(doc)
    assert len(phones) >= 4  # path, query, appointment patient, broadcast recipients
    for node in phones:
        assert re.search(node["pattern"], node["example"]), node
    for accepted in ("+4915112345678", "4915112345678", "4915112345678@s.whatsapp.net"):
        assert re.search(phones[0]["pattern"], accepted)


def test_the_cross_field_rules_and_text_lengths_are_in_the_document(doc):
    schemas = doc["components"]["schemas"]
    create = schemas["AppointmentCreate"]
    assert [r["required"] for r in create["anyOf"]] == [["duration_minutes"], ["service_id"]]
    patch = schemas["AppointmentPatch"]
    assert [r["required"] for r in patch["anyOf"]] == [["starts_at"], ["status"]]
    audience = schemas["BroadcastCreate"]["anyOf"]
    assert [r["required"] for r in audience] == [
        ["patient_phones"],
        ["all_opted_in"],
        ["appointments_on"],
    ]
    assert schemas["BroadcastCreate"]["properties"]["text"]["minLength"] == 1
    assert schemas["StaffMessage"]["properties"]["text"]["minLength"] == 1
    assert schemas["PatientRef"]["properties"]["name"]["minLength"] == 1
    assert schemas["PatientRef"]["required"] == ["phone"]


def test_the_documented_rules_are_the_ones_enforced(api):
    """Each documented rule, broken, is a 400 that names the field."""
    base = f"{api.base_url}/api/v1"
    r = api.http.post(
        f"{base}/appointments",
        json={"patient": {"phone": "+4915112345678"}, "starts_at": "2026-12-01T09:00:00Z"},
    )
    assert r.status_code == 400 and "duration_minutes" in r.json()["error"]["fields"]
    r = api.http.post(f"{base}/broadcasts", json={"text": "hi", "patient_phones": []})
    assert r.status_code == 400 and "patient_phones" in r.json()["error"]["message"]
    r = api.http.post(f"{base}/broadcasts", json={"text": "", "all_opted_in": True})
    assert r.status_code == 400
    assert r.json()["error"]["fields"]["text"][0] == "Length must be between 1 and 4096."
