"""``CypherGateHook.run``'s failures in real Airflow (``.venv-airflow``): which ones Airflow may
retry. Only a request never sent, or a refusal a later try can get past (a transient one, a
credential refused, a rate limit), is retried; any other refusal, a ``Neo.DatabaseError`` or an
answer lost after the request was sent fails the task at once: the first stand on every try,
the last two may have run, and a retry could write twice."""

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
    assert hook["client error"] == (
        "raised AirflowFailException (no retry): CypherGate answered 403"
        " Neo.ClientError.Security.Forbidden: Refused. (request r-2). Not retried: a denial"
        " stands on every try until the policy or the DAG's grants change"
    )
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


# Refusals no try gets past, each failing the task at once with why, the request id named.
NOT_RETRIED = {
    "policy denial": "a denial stands on every try until the policy or the DAG's grants change",
    "unknown database": "the database does not exist on any try",
    **dict.fromkeys(
        [
            "syntax error",
            "semantic error",
            "row limit",
            "access mode",
            "transaction type",
            "invalid request",
        ],
        "the refusal is of the statement or request as sent, which a retry sends unchanged",
    ),
}


@pytest.mark.parametrize("case", NOT_RETRIED)
def test_a_refusal_no_try_gets_past_fails_the_task_at_once(case: str) -> None:
    """Found by review: every ``Neo.ClientError`` was retried, a policy's denial or a syntax
    error as often as ``retries`` says, each try one more denial in the audit log."""
    outcome = canned_answers()["hook"][case]
    assert outcome.startswith("raised AirflowFailException (no retry): CypherGate answered "), (
        outcome
    )
    assert outcome.endswith(f": Refused. (request r-2). Not retried: {NOT_RETRIED[case]}"), outcome


@pytest.mark.parametrize(
    ("case", "code"),
    [
        ("token refused", "401 Neo.ClientError.Security.Unauthorized"),
        ("token expired", "401 Neo.ClientError.Security.TokenExpired"),
        ("rate limited", "429 Neo.TransientError.Request.TooManyRequests"),
        ("body too late", "408 Neo.ClientError.Request.Invalid"),
        ("policy unavailable", "503 Neo.TransientError.General.PolicyUnavailable"),
    ],
)
def test_a_refusal_a_later_try_may_get_past_is_retried(case: str, code: str) -> None:
    """A credential refused (the next try fetches a fresh one), a rate limit, a body that came
    too late (nothing ran), or anything the gateway calls transient."""
    assert canned_answers()["hook"][case] == (
        f"raised AirflowException: CypherGate answered {code}: Refused. (request r-2)"
    )


@pytest.mark.parametrize(
    ("case", "retried"),
    [("proxy 401", True), ("proxy 429", True), ("proxy 413", False)],
)
def test_a_4xx_from_a_proxy_in_front_is_retried_by_its_status(case: str, retried: bool) -> None:
    """A proxy that refuses a request does not send it on: nothing ran; its status decides."""
    status = case.removeprefix("proxy ")
    kind = "AirflowException" if retried else "AirflowFailException (no retry)"
    assert canned_answers()["hook"][case].startswith(
        f"raised {kind}: CypherGate answered {status} unknown:"
    )


@pytest.mark.parametrize("status", ["502 Bad Gateway", "503 Service Unavailable"])
def test_a_5xx_from_a_proxy_in_front_may_have_run_and_is_not_retried(status: str) -> None:
    """A 502 or 503 without the gateway's request id does not say whether the proxy had sent
    the request on: taken as sent, the task fails as for an answer lost. Before, retried."""
    lost = canned_answers()["hook"][f"proxy {status[:3]}"]
    assert lost.startswith(
        "raised CypherGateAnswerLost (no retry): the statement was sent to CypherGate at"
        f" https://gw.test, but its answer was lost (HTTP {status}, from something in front of"
        " the gateway): it may have run. Not retried, since a write could run twice: its audit"
        " records say whether it ran (cyphergate audit query --since "
    ), lost


def test_the_test_button_says_a_proxy_in_front_failed() -> None:
    ok, message = canned_answers()["hook"]["test button, proxy 502"]
    assert not ok
    assert message == (
        "CypherGate at https://gw.test did not answer: AnswerLost: the statement was sent to"
        " CypherGate at https://gw.test, but its answer was lost (HTTP 502 Bad Gateway, from"
        " something in front of the gateway): it may have run"
    )
