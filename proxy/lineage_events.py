"""OpenLineage run events for the statements the gateway decides on, sent off the request path.

One statement is one OpenLineage run, reported by one event when its last audit record is
written (:mod:`proxy.gateway.trail`): ``COMPLETE`` if it ran to its end (with the
``errorMessage`` facet too when its answer failed after it committed: its record's
``committed``), ``FAIL`` if it was refused or failed. A statement lasts milliseconds, so a
``START`` before it would double the events without telling a backend anything it could act on.

- job: namespace ``lineage.namespace`` (``cyphergate``), name ``<dag>.<task>`` (the Airflow
  provider's own job name for the task), or ``<dag>`` when the caller named no task;
- run: a fresh UUIDv7; facet ``cyphergate`` names the request id and decision id, which find
  the statement's audit records;
- inputs and outputs of a ``COMPLETE``: the labels and relationship types the statement read
  and wrote (:mod:`proxy.lineage`, from the analysis the policy decided on). A ``FAIL`` names no
  dataset (a refused statement touched nothing; a failed one rolled back) and carries the
  ``errorMessage`` facet: the error's code and reason, and the policy's reasons;
- parent (``ParentRunFacet``): the one handed over in ``X-CypherGate-Lineage-Parent`` (over
  Bolt, ``lineage_parent`` in the transaction metadata), as the Airflow OpenLineage provider's
  ``lineage_parent_id`` macro writes it: ``<namespace>/<job name>/<run id>``. Otherwise, when
  the caller named its DAG, task, run and try, one derived from them (see :func:`derived_run_id`).

A call that no DAG was resolved for (no credential, a refused one, an unmapped identity) leaves
no event: there is no job to name, and an unauthenticated caller must not be able to write
into a lineage backend. Its audit record is there.

The request path only puts the finished audit record in a bounded queue (:class:`Emitter`);
a thread of its own builds each event with the OpenLineage client's classes and hands it to
the transport. A full queue or a failing transport drops the event, counts it in
``cyphergate_lineage_events_total`` and never reaches the request.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import uuid
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from typing import Any, ClassVar

import attr
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import (
    JobFacet,
    RunFacet,
    error_message_run,
    job_type_job,
    parent_run,
)
from openlineage.client.transport import Transport
from openlineage.client.uuid import generate_new_uuid

from proxy.audit.record import AuditEvent
from proxy.lineage import LineageError, Touched
from proxy.metrics import Metrics
from proxy.principal import LINEAGE_PARENT_HEADER as PARENT_HEADER
from proxy.statement import reason_shown

log = logging.getLogger(__name__)

# Derived parent run ids are name-based UUIDs under this namespace, so that every replica and
# every restart derives the same id for the same task try.
_DERIVED = uuid.UUID("5f0c8a8e-7d4f-4f4b-9a0e-0c7e3a9b1d42")
_FACET_SCHEMA = "urn:cyphergate:facets:1-0-0:CypherGateRunFacet"


def _producer() -> str:
    try:
        return f"urn:cyphergate:gateway:{version('cyphergate')}"
    except PackageNotFoundError:  # a source tree that was not installed
        return "urn:cyphergate:gateway"


@attr.define
class CypherGateRunFacet(RunFacet):
    """The gateway's own run facet: what finds the statement's audit records."""

    requestId: str  # camelCase, as OpenLineage facets name their fields
    database: str
    decisionId: str | None = attr.field(default=None)
    policyRevision: str | None = attr.field(default=None)
    status: int | None = attr.field(default=None)
    transactionId: str | None = attr.field(default=None)
    _additional_skip_redact: ClassVar[list[str]] = ["requestId", "decisionId"]

    @staticmethod
    def _get_schema() -> str:
        return _FACET_SCHEMA


class RunEvents:
    """Builds the run event of a finished statement from its last audit record."""

    def __init__(self, *, namespace: str, parent_namespace: str, dataset_namespace: str) -> None:
        self._namespace = namespace
        self._parent_namespace = parent_namespace
        self._datasets = dataset_namespace
        self._producer = _producer()
        # The same for every event: built once (the client's classes validate on every build).
        self._job_facets: dict[str, JobFacet] = {
            "jobType": job_type_job.JobTypeJobFacet(
                processingType="BATCH",
                integration="CYPHERGATE",
                jobType="QUERY",
                producer=self._producer,
            )
        }

    def build(self, record: AuditEvent, parent: str | None = None) -> RunEvent | None:
        """The event, or ``None`` for a call that no DAG was resolved for. ``parent``: the
        parent run handed over (:data:`PARENT_HEADER`), if any."""
        principal = record.principal or {}
        dag = principal.get("dag")
        if not isinstance(dag, str) or not dag or record.database is None:
            return None
        task = principal.get("task")
        job_name = f"{dag}.{task}" if isinstance(task, str) and task else dag
        # An outcome without an error is a statement that ran to its end (status 202); so is
        # one whose answer failed after its transaction had committed (``committed``).
        completed = record.event == "outcome" and (record.error is None or bool(record.committed))
        facets: dict[str, RunFacet] = {"cyphergate": self._facet(record)}
        parent_facet = self._parent(principal, parent)
        if parent_facet is not None:
            facets["parent"] = parent_facet
        inputs: list[InputDataset] = []
        outputs: list[OutputDataset] = []
        if completed:
            inputs, outputs = self._datasets_of(record)
        if record.error is not None or not completed:
            facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
                message=_failure(record), programmingLanguage="Cypher", producer=self._producer
            )
        return RunEvent(
            eventType=RunState.COMPLETE if completed else RunState.FAIL,
            eventTime=record.time,
            run=Run(runId=str(generate_new_uuid()), facets=facets),
            job=Job(namespace=self._namespace, name=job_name, facets=self._job_facets),
            inputs=inputs,
            outputs=outputs,
            producer=self._producer,
        )

    def _facet(self, record: AuditEvent) -> CypherGateRunFacet:
        decision = record.decision or {}
        transaction = record.transaction or {}
        return CypherGateRunFacet(
            requestId=record.request_id,
            database=record.database or "",
            decisionId=_text(decision.get("decision_id")),
            policyRevision=_text(decision.get("policy_revision")),
            status=record.status,
            transactionId=_text(transaction.get("id")),
            producer=self._producer,
        )

    def _datasets_of(self, record: AuditEvent) -> tuple[list[InputDataset], list[OutputDataset]]:
        if record.analysis is None or record.database is None:
            return [], []
        try:
            touched = Touched.from_analysis(record.database, record.analysis)
        except LineageError:
            log.warning("request %s: its analysis names no datasets", record.request_id)
            return [], []
        return (
            [InputDataset(namespace=self._datasets, name=name) for name in touched.inputs()],
            [OutputDataset(namespace=self._datasets, name=name) for name in touched.outputs()],
        )

    def _parent(
        self, principal: Mapping[str, Any], handed: str | None
    ) -> parent_run.ParentRunFacet | None:
        dag, task = principal.get("dag"), principal.get("task")
        if handed is not None:
            given = parse_parent(handed)
            if given is not None and _own_job(given[1], dag, task):
                return self._parent_facet(*given)
            log.warning(
                "%s is not <namespace>/<job>/<run uuid> of the caller's own DAG and task;"
                " derived instead",
                PARENT_HEADER,
            )
        run, try_number = principal.get("run"), principal.get("try_number")
        if not (isinstance(dag, str) and isinstance(task, str) and isinstance(run, str)):
            return None
        if not isinstance(try_number, int):
            return None
        run_id = derived_run_id(self._parent_namespace, dag, task, run, try_number)
        return self._parent_facet(self._parent_namespace, f"{dag}.{task}", run_id)

    def _parent_facet(self, namespace: str, name: str, run_id: str) -> parent_run.ParentRunFacet:
        return parent_run.ParentRunFacet(
            run=parent_run.Run(runId=run_id),
            job=parent_run.Job(namespace=namespace, name=name),
            producer=self._producer,
        )


def parse_parent(value: str) -> tuple[str, str, str] | None:
    """``(namespace, job name, run id)`` of ``<namespace>/<job name>/<run id>`` (the provider's
    ``lineage_parent_id``; a namespace may hold ``/``, a job name and a run id cannot), or
    ``None`` if it is not that."""
    namespace, _, rest = value.strip().rpartition("/")
    namespace, _, name = namespace.rpartition("/")
    if not namespace or not name or len(value) > 1000 or not value.isprintable():
        return None
    try:
        run_id = str(uuid.UUID(rest))
    except ValueError:
        return None
    return namespace, name, run_id


def _own_job(name: str, dag: object, task: object) -> bool:
    """Whether a handed parent's job is the caller's own: its task's (the provider's
    ``<dag>.<task>``) or its DAG run's (``<dag>``); with no task named, any of its DAG's. The
    header is unsigned: the DAG comes from the verified credential, so a parent naming another
    DAG's job would file the statement's lineage under a run of a DAG it may not act as."""
    if not isinstance(dag, str):
        return False
    if name == dag:
        return True
    if isinstance(task, str) and task:
        return name == f"{dag}.{task}"
    return name.startswith(f"{dag}.")


def derived_run_id(namespace: str, dag: str, task: str, run: str, try_number: int) -> str:
    """A stable run id for one try of one Airflow task, from what the gateway is told of it.

    The Airflow OpenLineage provider's own id for the task try
    (``build_task_instance_run_id``) is a UUIDv7 made from the task instance's logical date
    and map index too, which reach the gateway neither over HTTP nor over Bolt; so this is not
    that id. It is the same for every statement of the try (they group under one parent), on
    every replica and after restarts; to name the provider's run, hand the parent over.

    The parts are named as a JSON list, not joined by dots: DAG, task and run ids may hold dots,
    so DAG ``a`` with task ``b.c`` would otherwise share DAG ``a.b``'s task ``c``'s run."""
    name = json.dumps([namespace, dag, task, try_number, run])
    return str(uuid.uuid5(_DERIVED, name))


def _failure(record: AuditEvent) -> str:
    """The error message facet's text: the error's code and reason, and the policy's reasons
    (what the audit record says, never the statement or its parameters; a credential in a
    reason's URL cut, :func:`~proxy.statement.reason_shown`)."""
    error = record.error or {}
    parts = [f"{error.get('code', 'unknown')} ({error.get('reason', 'unknown')})"]
    reasons = (record.decision or {}).get("reasons") or []
    if reasons:
        parts.append("policy: " + ", ".join(reason_shown(str(reason)) for reason in reasons))
    return "; ".join(parts)


def _text(value: object) -> str | None:
    return None if value is None else str(value)


class Emitter:
    """Takes finished statements on the request path (:meth:`ended`, never blocking) and sends
    their events from a thread of its own, through ``transport``.

    Thread-safety: :meth:`ended` is called from the event loop; the queue is the only thing
    shared with the sending thread (and the counters, which take their own locks).
    """

    def __init__(
        self,
        events: RunEvents,
        transport: Transport,
        *,
        metrics: Metrics,
        queue_size: int,
        close_timeout_s: float,
    ) -> None:
        self._events = events
        self._transport = transport
        # Items are (record, parent handed over); None asks the sending thread to stop.
        self._queue: queue.Queue[tuple[AuditEvent, str | None] | None] = queue.Queue(
            maxsize=queue_size
        )
        self._close_timeout_s = close_timeout_s
        self._thread = threading.Thread(target=self._send_all, name="lineage", daemon=True)
        # Bound once (each is shown as 0 before its first event).
        count = metrics.lineage_events
        self._emitted, self._dropped = count.labels("emitted"), count.labels("dropped")
        self._failed, self._skipped = count.labels("failed"), count.labels("skipped")

    def start(self) -> None:
        self._thread.start()

    def ended(self, record: AuditEvent, headers: Mapping[str, str]) -> None:
        """The statement of ``record`` (its last audit record) has ended. Never blocks, never
        raises: with no room in the queue the event is dropped and counted."""
        if record.principal is None or record.principal.get("dag") is None:
            self._skipped.inc()  # no DAG, no job (see the module docstring)
            return
        try:
            # The one header it needs, not the headers: they hold the caller's credential.
            self._queue.put_nowait((record, headers.get(PARENT_HEADER)))
        except queue.Full:
            self._dropped.inc()

    def close(self) -> None:
        """Send what is queued, for ``close_timeout_s`` at most, then close the transport."""
        if self._thread.is_alive():
            with contextlib.suppress(queue.Full):
                self._queue.put(None, timeout=self._close_timeout_s)
            self._thread.join(self._close_timeout_s)
            if self._thread.is_alive():
                log.warning("lineage: events still queued at shutdown were not sent")
        try:
            self._transport.close(self._close_timeout_s)
        except Exception as exc:
            log.warning("lineage: closing the %s transport failed (%s)", _kind(self), _name(exc))

    def _send_all(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            self._send(*item)

    def _send(self, record: AuditEvent, parent: str | None) -> None:
        try:
            event = self._events.build(record, parent)
        except Exception:
            log.exception("lineage: no event could be built for request %s", record.request_id)
            self._failed.inc()
            return
        if event is None:
            self._skipped.inc()
            return
        try:
            self._transport.emit(event)
        except Exception as exc:
            # The exception's type only: its text may hold the backend's URL, and a URL may hold
            # a credential.
            log.warning(
                "lineage: the %s transport failed (%s); event of request %s dropped",
                _kind(self),
                _name(exc),
                record.request_id,
            )
            self._failed.inc()
            return
        self._emitted.inc()


def _kind(emitter: Emitter) -> str:
    return str(getattr(emitter._transport, "kind", "?"))


def _name(exc: BaseException) -> str:
    return type(exc).__name__
