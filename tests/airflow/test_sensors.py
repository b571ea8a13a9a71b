"""``CypherGateSensor``'s semantics, the official ``Neo4jSensor``'s: the first row's selected
value decides, ``failure`` before ``success``, no rows "not yet" unless ``fail_on_empty``.
Real Airflow (``.venv-airflow``), the hook replaced by canned answers; the sensor against the
real gateway is in tests/airflow/test_provider.py."""

from __future__ import annotations

import pytest

from tests.airflow.runner import canned_answers

pytestmark = [pytest.mark.airflow]


def test_the_first_value_decides_as_in_neo4j_sensor() -> None:
    assert canned_answers()["sensor"] == {
        "true first value": True,
        "false first value": False,
        "later rows ignored": False,
        "no rows": False,
        "no rows, fail_on_empty": "raised AirflowException: No rows returned, and"
        " fail_on_empty is set (request r-1)",
        "success decides": False,
        "success met": True,
        "selector picks": True,
        "failure met": "raised AirflowException: Failure criteria met: failure('failed')"
        " returned True (request r-1)",
        "failure first": "raised AirflowException: Failure criteria met: failure('failed')"
        " returned True (request r-1)",
        "failure not met": True,
        "success not callable": "raised ValueError: success must be callable, not 'yes'",
        "selector not callable": "raised ValueError: selector must be callable, not 0",
    }
