"""What the tests check an emitted OpenLineage event against: the spec's JSON schema, and the
client library's classes.

The OpenLineage client (openlineage-python 1.54) ships no JSON Schema file of the spec, only
classes generated from it, so the spec's schema is kept, pinned, in tests/openlineage/ (its
README says from where): every event is validated against it, its references resolved offline,
and the test fails if an event names another version. The classes' validators then check what
the schema's formats say (a run id is a UUID, an event time an ISO 8601 date-time with a time):
each event is built again, field by field, with them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import error_message_run, parent_run
from referencing import Registry, Resource

SCHEMAS = Path(__file__).parent / "openlineage"


def schema(path: Path) -> dict[str, Any]:
    """A kept JSON schema."""
    loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return loaded


CORE = schema(SCHEMAS / "OpenLineage.json")
ERROR_FACET = schema(SCHEMAS / "ErrorMessageRunFacet.json")


def validate(instance: Any, document: dict[str, Any], pointer: str, *more: dict[str, Any]) -> None:
    """``instance`` against ``document``'s ``pointer`` definition, its references resolved
    offline from the kept schemas (and ``more``: a producer's own facet schemas)."""
    registry: Registry[Any] = Registry().with_resources(
        (kept["$id"], Resource.from_contents(kept)) for kept in (CORE, ERROR_FACET, *more)
    )
    Draft202012Validator({"$ref": document["$id"] + pointer}, registry=registry).validate(instance)


RUN_EVENT_SCHEMA = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
_TOP = {"eventType", "eventTime", "run", "job", "inputs", "outputs", "producer", "schemaURL"}


def conforming(document: dict[str, Any]) -> dict[str, Any]:
    """``document``, once it is a RunEvent the client's classes accept (else AssertionError or
    the classes' ValueError)."""
    assert set(document) <= _TOP, set(document) - _TOP
    assert document["schemaURL"] == RUN_EVENT_SCHEMA == CORE["$id"] + "#/$defs/RunEvent"
    validate(document, CORE, "#/$defs/RunEvent")
    job, run = document["job"], document["run"]
    RunEvent(
        eventType=RunState(document["eventType"]),
        eventTime=document["eventTime"],
        run=Run(runId=run["runId"]),
        job=Job(namespace=job["namespace"], name=job["name"]),
        inputs=[InputDataset(namespace=d["namespace"], name=d["name"]) for d in document["inputs"]],
        outputs=[
            OutputDataset(namespace=d["namespace"], name=d["name"]) for d in document["outputs"]
        ],
        producer=document["producer"],
    )
    for facets in (run.get("facets", {}), job.get("facets", {})):
        for facet in facets.values():
            assert facet["_producer"] == document["producer"]
            assert facet["_schemaURL"]
    facets = run.get("facets", {})
    if "parent" in facets:
        parent = facets["parent"]
        parent_run.ParentRunFacet(
            run=parent_run.Run(runId=parent["run"]["runId"]),
            job=parent_run.Job(namespace=parent["job"]["namespace"], name=parent["job"]["name"]),
        )
    if "errorMessage" in facets:
        error = facets["errorMessage"]
        assert error["_schemaURL"].startswith(ERROR_FACET["$id"])
        validate(error, ERROR_FACET, "#/$defs/ErrorMessageRunFacet")
        error_message_run.ErrorMessageRunFacet(
            message=error["message"], programmingLanguage=error["programmingLanguage"]
        )
    return document


def read_events(path: Path) -> list[dict[str, Any]]:
    """The events of a file transport's JSON Lines file, each checked."""
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    return [conforming(json.loads(line)) for line in lines if line.strip()]


def of_request(events: list[dict[str, Any]], request_id: str) -> list[dict[str, Any]]:
    """The events of one request (the ``cyphergate`` run facet names it)."""
    return [e for e in events if e["run"]["facets"]["cyphergate"]["requestId"] == request_id]
