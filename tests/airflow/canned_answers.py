"""Run by ``.venv-airflow``'s Python for tests/airflow/test_sensors.py and test_operators.py:
``CypherGateSensor.poke`` and ``CypherGateOperator.execute`` on canned answers, the hook
replaced by a fake at the hook seam. Prints ``{"sensor": {case: outcome}, "operator": {...}}``
as JSON, an outcome being what the call returned or ``"raised <type>: <message>"``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from operator import itemgetter
from typing import Any

import proxy.airflow.operators
from proxy.airflow.operators import CypherGateOperator
from proxy.airflow.sensors import CypherGateSensor
from proxy.client import Result


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
        return f"raised {type(error).__name__}: {error}"


def made(**options: Any) -> str:
    try:
        CypherGateSensor(task_id="t", statement="RETURN 1", **options)
    except Exception as error:
        return f"raised {type(error).__name__}: {error}"
    return "made"


def execute(values: list[list[Any]], **options: Any) -> Any:
    """The operator's answer, its module's hook class replaced by one answering ``values``."""
    vars(proxy.airflow.operators)["CypherGateHook"] = lambda *args, **kwargs: CannedHook(values)
    operator = CypherGateOperator(task_id="t", statement="RETURN 1", **options)
    try:
        return operator.execute({})
    except Exception as error:
        return f"raised {type(error).__name__}: {error}"


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
    print(json.dumps({"sensor": outcomes, "operator": rows}))


if __name__ == "__main__":
    main()
