"""``CypherGateSensor``: wait until a Cypher statement's first value says so.

The semantics of the official ``Neo4jSensor`` (``apache-airflow-providers-neo4j``): each poke
runs the statement; ``selector`` picks a value from the first row (its first column by default);
``failure(value)`` true fails the task at once, ``success(value)`` decides if given, else the
value's truthiness; no rows is "not yet", or a failure with ``fail_on_empty``. What differs is
the way in: ``statement`` and ``cyphergate_conn_id`` as in :class:`CypherGateOperator` (the
official sensor's ``cypher`` and ``neo4j_conn_id``), each poke a request the gateway decides
and audits, its request id in the task log.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cached_property
from operator import itemgetter
from typing import Any

from airflow.exceptions import AirflowException
from airflow.sdk import BaseSensorOperator

from proxy.airflow.hooks import CypherGateHook


class CypherGateSensor(BaseSensorOperator):
    """Pokes ``statement`` through CypherGate until its first row's value satisfies a condition.

    :param statement: Cypher, templated (a ``.cypher`` file too).
    :param parameters: statement parameters, templated.
    :param database: overrides the connection's database.
    :param success: called with the selected value; its truth ends the wait successfully.
        Without it, the value's own truth does.
    :param failure: called with the selected value first; if true, the task fails at once
        (retries apply, as with any failure).
    :param selector: picks the value from the first row, as a tuple in the statement's column
        order (default: the first column).
    :param fail_on_empty: fail, rather than wait on, a statement that returns no rows.

    Poke and reschedule modes, ``timeout``, ``poke_interval``, ``soft_fail`` and
    ``exponential_backoff`` are Airflow's own (``BaseSensorOperator``).
    """

    template_fields: Sequence[str] = ("statement", "parameters", "database", "cyphergate_conn_id")
    template_ext: Sequence[str] = (".cypher",)
    template_fields_renderers = {"parameters": "json"}  # noqa: RUF012 - Airflow's class attribute
    ui_color = "#5db3ba"

    def __init__(
        self,
        *,
        statement: str,
        parameters: dict[str, Any] | None = None,
        database: str | None = None,
        cyphergate_conn_id: str = CypherGateHook.default_conn_name,
        success: Callable[[Any], bool] | None = None,
        failure: Callable[[Any], bool] | None = None,
        selector: Callable[[tuple[Any, ...]], Any] = itemgetter(0),
        fail_on_empty: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        # Checked when the DAG is parsed, not at the first poke: a typo fails the file's import.
        for name, given in (("success", success), ("failure", failure), ("selector", selector)):
            if given is not None and not callable(given):
                raise ValueError(f"{name} must be callable, not {given!r}")
        self.statement = statement
        self.parameters = parameters or {}
        self.database = database
        self.cyphergate_conn_id = cyphergate_conn_id
        self.success = success
        self.failure = failure
        self.selector = selector
        self.fail_on_empty = fail_on_empty

    @cached_property
    def hook(self) -> CypherGateHook:
        """One hook for all the pokes of a try, so its credential is reused while it is valid."""
        return CypherGateHook(self.cyphergate_conn_id, database=self.database)

    def poke(self, context: Any) -> bool:  # noqa: ARG002 - Airflow passes it
        answer = self.hook.run(self.statement, self.parameters)
        if not answer.values:
            if self.fail_on_empty:
                raise AirflowException(
                    f"No rows returned, and fail_on_empty is set (request {answer.request_id})"
                )
            self.log.info("No rows yet")
            return False
        value = self.selector(tuple(answer.values[0]))
        if self.failure is not None and self.failure(value):
            raise AirflowException(
                f"Failure criteria met: failure({value!r}) returned True"
                f" (request {answer.request_id})"
            )
        met = bool(self.success(value)) if self.success is not None else bool(value)
        self.log.info("Selected value %r: %s", value, "met" if met else "not yet")
        return met
