"""Run by ``.venv-airflow``'s Python for tests/airflow/test_sensors.py, test_operators.py and
test_hooks.py: ``CypherGateSensor.poke`` and ``CypherGateOperator.execute`` on canned answers,
the hook replaced by a fake at the hook seam, and ``CypherGateHook.run`` with its client's
HTTP transport replaced (canned answers, a lost answer) or pointed at a closed port. Prints
``{"sensor": {case: outcome}, "operator": {...}, "hook": {...}}`` as JSON, an outcome being
what the call returned or ``"raised <type>: <message>"``, the type followed by ``(no retry)``
when it is an ``AirflowFailException``, which Airflow fails without a retry.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from operator import itemgetter
from pathlib import Path
from typing import Any

import httpx
from airflow.sdk.exceptions import AirflowFailException

import proxy.airflow.hooks
import proxy.airflow.operators
from proxy.airflow.hooks import CypherGateHook
from proxy.airflow.operators import CypherGateOperator
from proxy.airflow.sensors import CypherGateSensor
from proxy.client import CallContext, CypherGateClient, Result
from proxy.ports import free_ports
from proxy.wire import REQUEST_ID_HEADER


class CannedHook:
    """Answers every statement with ``values``, as request ``r-1``."""

    def __init__(self, values: list[list[Any]], *args: Any, **kwargs: Any) -> None:
        self.values = values

    def run(self, statement: str, parameters: dict[str, Any], **options: Any) -> Result:
        fields = [f"c{i}" for i in range(len(self.values[0]))] if self.values else []
        return Result(fields, self.values, {}, request_id="r-1")


def poke(values: list[list[Any]], **options: Any) -> bool | str:
    sensor = CypherGateSensor(task_id="t", statement="RETURN 1", **options)
    sensor.hook = CannedHook(values)  # type: ignore[assignment]
    try:
        return sensor.poke({})
    except Exception as error:
        return raised(error)


def made(**options: Any) -> str:
    try:
        CypherGateSensor(task_id="t", statement="RETURN 1", **options)
    except Exception as error:
        return raised(error)
    return "made"


def execute(values: list[list[Any]], **options: Any) -> Any:
    """The operator's answer, its module's hook class replaced by one answering ``values``."""
    vars(proxy.airflow.operators)["CypherGateHook"] = lambda *args, **kwargs: CannedHook(values)
    operator = CypherGateOperator(task_id="t", statement="RETURN 1", **options)
    try:
        return operator.execute({})
    except Exception as error:
        return raised(error)


def raised(error: Exception) -> str:
    retry = " (no retry)" if isinstance(error, AirflowFailException) else ""
    return f"raised {type(error).__name__}{retry}: {error}"


def refused(code: str, status: int) -> Callable[[httpx.Request], httpx.Response]:
    """The gateway's refusal with ``code``, as request ``r-2``."""
    body = {"errors": [{"code": code, "message": "Refused."}]}
    return lambda request: httpx.Response(status, json=body, headers={REQUEST_ID_HEADER: "r-2"})


def from_a_proxy(status: int) -> Callable[[httpx.Request], httpx.Response]:
    """A proxy's answer in front of the gateway: no request id, no Neo4j code."""
    return lambda request: httpx.Response(status, text="<html>proxy</html>")


# Each refusal the hook is told whether to retry (tests/airflow/test_hooks.py): a name, the code
# and status the gateway answers with (none: a proxy in front, with the status).
REFUSALS = {
    "policy denial": ("Neo.ClientError.Security.Forbidden", 403),
    "syntax error": ("Neo.ClientError.Statement.SyntaxError", 400),
    "semantic error": ("Neo.ClientError.Statement.SemanticError", 400),
    "row limit": ("Neo.ClientError.Statement.RowLimitExceeded", 400),
    "access mode": ("Neo.ClientError.Statement.AccessMode", 400),
    "transaction type": ("Neo.ClientError.Transaction.ForbiddenDueToTransactionType", 400),
    "invalid request": ("Neo.ClientError.Request.Invalid", 400),
    "unknown database": ("Neo.ClientError.Database.DatabaseNotFound", 404),
    "token refused": ("Neo.ClientError.Security.Unauthorized", 401),
    "token expired": ("Neo.ClientError.Security.TokenExpired", 401),
    "rate limited": ("Neo.TransientError.Request.TooManyRequests", 429),
    "body too late": ("Neo.ClientError.Request.Invalid", 408),
    "policy unavailable": ("Neo.TransientError.General.PolicyUnavailable", 503),
    "proxy 401": (None, 401),
    "proxy 413": (None, 413),
    "proxy 429": (None, 429),
    "proxy 502": (None, 502),
    "proxy 503": (None, 503),
}


def lost(request: httpx.Request) -> httpx.Response:
    raise httpx.RemoteProtocolError("Server disconnected without sending a response.")


def run(
    url: str,
    gateway: Callable[[httpx.Request], httpx.Response] | None = None,
    context: CallContext | None = None,
) -> str:
    """What ``CypherGateHook.run`` of a write does, its client talking to ``gateway``, in a task
    with ``context`` (by default, none: outside a task)."""
    vars(proxy.airflow.hooks)["task_context"] = lambda lineage: context or CallContext()
    hook = CypherGateHook()
    transport = None if gateway is None else httpx.MockTransport(gateway)
    hook._client = CypherGateClient(url, lambda: "Bearer t0k3n", transport=transport)
    try:
        return repr(hook.run("CREATE (:X)"))
    except Exception as error:
        return raised(error)


def test_button(
    url: str, gateway: Callable[[httpx.Request], httpx.Response] | None = None
) -> list[Any]:
    """What the connection form's Test button says of a gateway at ``url`` (``gateway``: the
    answers it gets there)."""
    with tempfile.TemporaryDirectory() as folder:
        token = Path(folder) / "token"
        token.write_text("t0k3n")
        extra = {"auth_method": "token_file", "token_file": str(token)}
        connection = {"conn_type": "cyphergate", "host": url, "extra": extra}
        os.environ["AIRFLOW_CONN_CYPHERGATE_TESTED"] = json.dumps(connection)
        hook = CypherGateHook("cyphergate_tested")
        if gateway is not None:
            transport = httpx.MockTransport(gateway)
            hook._client = CypherGateClient(url, lambda: "Bearer t0k3n", transport=transport)
        return list(hook.test_connection())


def main() -> None:
    at_least_3: Callable[[Any], bool] = lambda value: value >= 3  # noqa: E731
    is_failed: Callable[[Any], bool] = lambda value: value == "failed"  # noqa: E731
    outcomes: dict[str, bool | str] = {
        "true first value": poke([[True, 0]]),
        "false first value": poke([[0, True]]),
        "later rows ignored": poke([[0], [1]]),
        "no rows": poke([]),
        "no rows, fail_on_empty": poke([], fail_on_empty=True),
        "success decides": poke([[2]], success=at_least_3),
        "success met": poke([[3]], success=at_least_3),
        "selector picks": poke([["x", 4]], selector=itemgetter(1), success=at_least_3),
        "failure met": poke([["failed"]], failure=is_failed, success=bool),
        "failure first": poke([["failed"]], failure=is_failed, success=lambda value: True),
        "failure not met": poke([["running"]], failure=is_failed),
        "success not callable": made(success="yes"),
        "selector not callable": made(selector=0),
    }
    rows = {
        "rows": execute([[1], [2]]),
        "too many rows": execute([["x" * 100]] * 10, max_xcom_bytes=500),
    }
    (closed,) = free_ports(1)
    hook = {
        "database error": run("https://gw.test", refused("Neo.DatabaseError.General.x", 502)),
        "transient error": run("https://gw.test", refused("Neo.TransientError.General.x", 503)),
        "client error": run("https://gw.test", refused("Neo.ClientError.Security.Forbidden", 403)),
        "connection refused": run(f"http://127.0.0.1:{closed}"),
        "answer lost": run("https://gw.test", lost),
        "non-ascii task": run(
            "https://gw.test", refused("x", 200), CallContext(dag="etl", task="chargé")
        ),
        "test button, refused": test_button(f"http://127.0.0.1:{closed}"),
        "test button, proxy 502": test_button("https://gw.test", from_a_proxy(502)),
    }
    hook |= {
        name: run(
            "https://gw.test", from_a_proxy(status) if code is None else refused(code, status)
        )
        for name, (code, status) in REFUSALS.items()
    }
    print(json.dumps({"sensor": outcomes, "operator": rows, "hook": hook}))


if __name__ == "__main__":
    main()
