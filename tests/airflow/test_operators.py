"""``CypherGateOperator``'s results, on canned answers in real Airflow (``.venv-airflow``); the
operator against the real gateway is in tests/airflow/test_provider.py."""

from __future__ import annotations

import pytest

from tests.airflow.runner import canned_answers

pytestmark = [pytest.mark.airflow]


def test_rows_go_to_xcom_until_they_are_too_many() -> None:
    answers = canned_answers()["operator"]
    assert answers["rows"] == [{"c0": 1}, {"c0": 2}]
    # A refusal of the provider's own names the request too: the statement ran, and was audited.
    # Not retried: a retry would run the statement (a write too) again, to the same end.
    assert answers["too many rows"] == (
        "raised AirflowFailException (no retry): 10 rows (1120 bytes of JSON) exceed"
        " max_xcom_bytes=500; add LIMIT or use result='none' (request r-1). The statement ran:"
        " not retried, which would run it again"
    )
