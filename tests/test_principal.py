"""DagResolver: an identity's DAGs, worked out once and remembered, always as the bindings say."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.bolt.messages import PRINCIPAL_PARTS
from proxy.errors import BadRequest
from proxy.principal import DagResolver, Identity
from proxy.settings import BindingSettings

ISSUERS = ["https://a.example", "https://b.example"]
NAMES = ["x", "y", "z"]
DAGS = st.lists(st.sampled_from(["etl", "report", "load", "audit"]), min_size=1, max_size=2)

bindings = st.one_of(
    st.builds(
        BindingSettings,
        oidc_issuer=st.sampled_from(ISSUERS),
        subject=st.sampled_from(NAMES),
        dags=DAGS,
    ),
    st.builds(
        BindingSettings,
        oidc_issuer=st.sampled_from(ISSUERS),
        client_id=st.sampled_from(NAMES),
        dags=DAGS,
    ),
    st.builds(
        BindingSettings,
        oidc_issuer=st.sampled_from(ISSUERS),
        service_account=st.sampled_from(NAMES),
        dags=DAGS,
    ),
    st.builds(
        BindingSettings,
        iam_role_arn=st.sampled_from(["arn:aws:iam::111122223333:role/x"]),
        dags=DAGS,
    ),
)
identities = st.one_of(
    st.builds(
        Identity,
        method=st.just("oidc"),
        issuer=st.sampled_from(ISSUERS),
        subject=st.sampled_from(NAMES),
        client_id=st.none() | st.sampled_from(NAMES),
        service_account=st.none() | st.sampled_from(NAMES),
        asserted_dag=st.none() | st.sampled_from(["etl", "other"]),
    ),
    st.builds(
        Identity,
        method=st.just("aws_iam"),
        issuer=st.just("sts"),
        subject=st.sampled_from(
            ["arn:aws:iam::111122223333:role/x", "arn:aws:iam::111122223333:role/y"]
        ),
    ),
)


@settings(max_examples=300, derandomize=True, deadline=None, database=None)
@given(st.lists(bindings, max_size=6), st.lists(identities, min_size=1, max_size=12))
def test_remembered_dags_are_the_bindings_dags(
    configured: list[BindingSettings], callers: list[Identity]
) -> None:
    remembering = DagResolver(configured, remember=3)  # small: it is emptied along the way
    for identity in callers:
        fresh = DagResolver(configured).allowed_dags(identity)
        assert remembering.allowed_dags(identity) == fresh
        expected = {
            dag
            for binding in configured
            for dag in binding.dags
            if (binding.iam_role_arn is not None and identity.subject == binding.iam_role_arn)
            or (
                identity.method == "oidc"
                and binding.oidc_issuer == identity.issuer
                and (
                    (binding.subject is not None and binding.subject == identity.subject)
                    or (
                        binding.subject is None
                        and binding.client_id is not None
                        and binding.client_id == identity.client_id
                    )
                    or (
                        binding.subject is None
                        and binding.client_id is None
                        and binding.service_account is not None
                        and binding.service_account == identity.service_account
                    )
                )
            )
        }
        if identity.asserted_dag is not None:
            expected.add(identity.asserted_dag)
        assert fresh == expected


def test_it_keeps_at_most_what_it_may() -> None:
    resolver = DagResolver([], remember=2)
    for subject in ["a", "b", "c", "d", "e"]:
        identity = Identity(method="oidc", issuer=ISSUERS[0], subject=subject, asserted_dag="etl")
        assert resolver.allowed_dags(identity) == {"etl"}
        assert len(resolver._known) <= 2


@pytest.mark.parametrize(
    ("run", "accepted"),
    [
        ("scheduled__2026-11-30T00:00:00+00:00", True),
        ("manual__2026-11-30~retry", True),  # Airflow's allowed_run_id_pattern admits '~'
        ("manual__2026/11/30", True),  # the Bolt door's principal keeps a run id's '/'
        ("a\nb", False),
        ("<script>", False),
        ("x" * 251, False),
    ],
)
def test_a_run_id_is_what_airflow_makes(run: str, accepted: bool) -> None:
    resolver = DagResolver([])
    identity = Identity(method="oidc", issuer=ISSUERS[0], subject="x", asserted_dag="etl")
    headers = {"x-cyphergate-run": run}
    if accepted:
        assert resolver.resolve(identity, headers).run == run
    else:
        with pytest.raises(BadRequest):
            resolver.resolve(identity, headers)


@pytest.mark.parametrize(
    ("headers", "over_http", "over_bolt"),
    [
        (
            {"x-cyphergate-task": "chargé"},
            "Header x-cyphergate-task is not a valid Airflow id.",
            "The task (second part) of the login principal dag/task/try/run is not a valid"
            " Airflow id.",
        ),
        (
            {"x-cyphergate-try": "x"},
            "Header x-cyphergate-try must be a whole number.",
            "The try number (third part) of the login principal dag/task/try/run must be a"
            " whole number.",
        ),
        (
            {},
            "This identity may act as several DAGs: name one in X-CypherGate-DAG.",
            "This identity may act as several DAGs: name one in the login principal (dag, or"
            " dag/task/try/run).",
        ),
    ],
    ids=["task", "try", "no-dag"],
)
def test_a_refusal_names_where_the_value_came_from(
    headers: dict[str, str], over_http: str, over_bolt: str
) -> None:
    """HTTP's refusal names the header; the Bolt door's, the part of its login principal."""
    resolver = DagResolver([BindingSettings(oidc_issuer=ISSUERS[0], subject="x", dags=["a", "b"])])
    identity = Identity(method="oidc", issuer=ISSUERS[0], subject="x")
    named = {"x-cyphergate-dag": "a", **headers} if headers else {}
    for names, said in [({}, over_http), (PRINCIPAL_PARTS, over_bolt)]:
        with pytest.raises(BadRequest) as refused:
            resolver.resolve(identity, named, names)
        assert refused.value.message == said
