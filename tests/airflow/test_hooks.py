"""``CypherGateHook.run``'s failures in real Airflow (``.venv-airflow``): which ones Airflow may
retry. Only a request never sent, or a refusal the gateway calls transient or the caller's, is
retried; a ``Neo.DatabaseError`` or an answer lost after the request was sent fails the task at
once, since the statement may have run and a retry could write twice."""

from __future__ import annotations

import re

import pytest

from tests.airflow.runner import canned_answers

pytestmark = [pytest.mark.airflow]


def test_only_what_cannot_have_run_twice_is_retried() -> None:
    hook = canned_answers()["hook"]
    assert hook["database error"] == (
        "raised AirflowFailException (no retry): CypherGate answered 502"
        " Neo.DatabaseError.General.x: Refused. (request r-2). Not retried: a"
        " Neo.DatabaseError does not mend by trying again, and the statement may have written;"
        " its audit records say what ran"
    )
    assert hook["transient error"] == (
        "raised AirflowException: CypherGate answered 503 Neo.TransientError.General.x:"
        " Refused. (request r-2)"
    )
    assert hook["client error"].startswith("raised AirflowException: CypherGate answered 403")
    refused = hook["connection refused"]
    assert re.fullmatch(
        r"raised AirflowException: CypherGate at http://127\.0\.0\.1:\d+ could not be reached"
        r" \(ConnectError: .*\): nothing was sent, so nothing ran; a retry is safe",
        refused,
    ), refused
    lost = hook["answer lost"]
    assert lost.startswith(
        "raised CypherGateAnswerLost (no retry): the statement was sent to CypherGate at"
        " https://gw.test, but its answer was lost (RemoteProtocolError: Server disconnected"
        " without sending a response.): it may have run. Not retried, since a write could run"
        " twice: its audit records say whether it ran (cyphergate audit query --since "
    ), lost


def test_a_task_id_outside_ascii_fails_the_task_in_words_not_an_encoding_error() -> None:
    """Airflow 3.3 takes Unicode letters in dag_id and task_id (``[\\w.-]``); the gateway
    takes ASCII ids only. Before, httpx's UnicodeEncodeError reached the task."""
    assert canned_answers()["hook"]["non-ascii task"] == (
        "raised AirflowFailException (no retry): the task id 'chargé' cannot be sent in"
        " X-CypherGate-Task: CypherGate takes Airflow ids in printable ASCII only, so that no"
        " look-alike letter names another DAG: rename it"
    )


def test_the_test_button_says_the_gateway_did_not_answer() -> None:
    ok, message = canned_answers()["hook"]["test button, refused"]
    assert not ok
    assert re.fullmatch(
        r"CypherGate at http://127\.0\.0\.1:\d+ did not answer: ConnectError: .*", message
    ), message
