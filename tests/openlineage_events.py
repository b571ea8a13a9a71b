"""What the tests check an emitted OpenLineage event against.

The OpenLineage client (openlineage-python 1.54) ships no JSON Schema file of the spec, only
classes generated from it, whose validators check what the schema's formats say (a run id is a
UUID, an event time an ISO 8601 date-time with a time). An event is checked by building it
again, field by field, with those classes: a missing or misshapen field fails.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import error_message_run, parent_run

RUN_EVENT_SCHEMA = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
_TOP = {"eventType", "eventTime", "run", "job", "inputs", "outputs", "producer", "schemaURL"}


def conforming(document: dict[str, Any]) -> dict[str, Any]:
    """``document``, once it is a RunEvent the client's classes accept (else AssertionError or
    the classes' ValueError)."""
    assert set(document) <= _TOP, set(document) - _TOP
    assert document["schemaURL"] == RUN_EVENT_SCHEMA
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
