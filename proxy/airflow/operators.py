"""``CypherGateOperator``: one templated Cypher statement as an Airflow task.

Statements through CypherGate are short and bounded by the policy's timeout, so the operator
runs them in the worker rather than deferring: a trigger would hold a connection just as long.
With ``apache-airflow-providers-openlineage`` installed, the task's lineage events name the labels
and relationship types its statement read and wrote (:mod:`proxy.airflow.lineage`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from proxy.airflow.hooks import CypherGateHook
from proxy.lineage import Lineage

ResultMode = Literal["none", "rows", "counters"]


class CypherGateOperator(BaseOperator):
    """Runs ``statement`` through CypherGate; pushes rows or counters to XCom if asked.

    :param statement: Cypher, templated.
    :param parameters: statement parameters, templated.
    :param database: overrides the connection's database.
    :param result: ``none``, ``rows`` (to XCom, at most ``max_xcom_bytes`` of JSON, else the
        task fails, without a retry that would run the statement again, rather than push a
        truncated result) or ``counters``.
    """

    template_fields: Sequence[str] = ("statement", "parameters", "database")
    template_ext: Sequence[str] = (".cypher",)
    ui_color = "#5db3ba"

    def __init__(
        self,
        *,
        statement: str,
        parameters: dict[str, Any] | None = None,
        database: str | None = None,
        cyphergate_conn_id: str = CypherGateHook.default_conn_name,
        result: ResultMode = "rows",
        max_xcom_bytes: int = 48 * 1024,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if result not in ("none", "rows", "counters"):
            raise ValueError(f"result must be none, rows or counters, not {result!r}")
        self.statement = statement
        self.parameters = parameters or {}
        self.database = database
        self.cyphergate_conn_id = cyphergate_conn_id
        self.result = result
        self.max_xcom_bytes = max_xcom_bytes
        # What the statement touched, as the gateway answered it (none if it was refused).
        self._answered: list[Lineage] = []

    def execute(self, context: Any) -> Any:  # noqa: ARG002 - Airflow passes it
        hook = CypherGateHook(self.cyphergate_conn_id, database=self.database)
        answer = hook.run(
            self.statement, self.parameters, include_counters=self.result == "counters"
        )
        if answer.lineage is not None:
            self._answered.append(answer.lineage)
        self.log.info("CypherGate returned %d rows", len(answer.values))
        if self.result == "none":
            return None
        if self.result == "counters":
            return answer.counters
        size = len(json.dumps(answer.rows, default=str))
        if size > self.max_xcom_bytes:
            # The statement ran: a retry would run it (a write too) again, to the same end.
            raise AirflowFailException(
                f"{len(answer.values)} rows ({size} bytes of JSON) exceed max_xcom_bytes="
                f"{self.max_xcom_bytes}; add LIMIT or use result='none'"
                f" (request {answer.request_id}). The statement ran: not retried, which would"
                " run it again"
            )
        return answer.rows

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:  # noqa: ARG002
        """The datasets the statement read and wrote, and the gateway's request id, for
        apache-airflow-providers-openlineage (an ``OperatorLineage``)."""
        from proxy.airflow.lineage import operator_lineage  # needs the openlineage provider

        return operator_lineage(self._answered)

    def get_openlineage_facets_on_failure(self, task_instance: Any) -> Any:
        """As on completion: a refused statement touched nothing (no datasets, no facet); one
        that ran before the task failed (its rows too large for XCom) did."""
        return self.get_openlineage_facets_on_complete(task_instance)
