"""``policy replay``'s private OPA decides with the proposed folder as it would ship: the files
a bundle of it holds (no hidden files, schemas or tests), and only grants that would build."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from proxy.analysis import Analysis
from proxy.app import open_policy
from proxy.audit.record import AuditEvent
from proxy.audit.sqlite import SQLiteAuditLog
from proxy.bundles import BundleError
from proxy.devstack.install import default_cache_dir, ensure_opa
from proxy.gateway.replay import Change, ReplaySummary, replay
from proxy.opa_server import proposed_policy
from proxy.plan import PlanFacts
from proxy.policy import Decision, policy_input
from proxy.principal import Identity, Principal
from tests.command_line import cyphergate

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    return shutil.copytree(REPO / "policies", tmp_path / "policies")


def decided(policies: Path) -> Decision:
    document = policy_input(
        Principal(Identity(method="oidc", issuer="i", subject="s"), dag="demo_reader"),
        database="neo4j",
        statement="RETURN 1",
        parameter_names=[],
        requested_access_mode=None,
        analysis=Analysis(query_type="r", facts=PlanFacts()),
    )

    async def ask() -> Decision:
        with proposed_policy(ensure_opa(default_cache_dir()), policies) as settings:
            async with open_policy(settings, cache=False) as policy:
                return await policy.decide(document)

    return asyncio.run(ask())


def test_a_hidden_module_the_bundle_leaves_out_does_not_decide_the_replay(
    policies: Path,
) -> None:
    """A module in a hidden folder never ships (``policy build`` leaves hidden files out), so it
    must not make replay's decisions either: here it would have kept a newly allowed decision
    looking refused, and ``--fail-on-change`` quiet."""
    assert decided(policies).allow
    (policies / ".ci").mkdir()
    (policies / ".ci" / "keep.rego").write_text(
        'package cyphergate.authz\n\nreasons contains "label_not_granted:Secret" if true\n',
        encoding="utf-8",
    )
    decision = decided(policies)
    assert decision.allow and decision.reasons == ()


def test_grants_that_would_not_build_are_not_replayed(policies: Path, tmp_path: Path) -> None:
    data = json.loads((policies / "data.json").read_text(encoding="utf-8"))
    data["cyphergate"]["grants"]["dags"]["demo_reader"]["databases"]["neo4j"]["read"] = {
        "lables": ["*"]
    }
    (policies / "data.json").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(BundleError, match=r"does not match schemas/grants\.json"):
        decided(policies)
    replay = cyphergate(
        "policy", "replay", "--log", str(tmp_path / "a.sqlite3"),
        "--policies", str(policies), "--opa", str(ensure_opa(default_cache_dir())),
    )  # fmt: skip
    assert replay.returncode == 2, replay.stderr
    assert "data.json does not match schemas/grants.json at" in replay.stderr
    assert "Traceback" not in replay.stderr


def test_a_proposed_shadow_mode_that_would_run_refused_statements_is_a_change(
    policies: Path,
) -> None:
    """Turning a DAG's grant to shadow mode keeps the policy's word (a refusal, for the same
    reasons) but runs what it refuses: replay must report that, or ``--fail-on-change`` lets a
    pull request through that would run every statement the DAG was refused."""
    analysis = Analysis(query_type="r", facts=PlanFacts(labels_read=frozenset({"Account"})))
    record = {
        "event": "decision",
        "seq": 7,
        "time": "2026-12-01T00:00:00Z",
        "principal": {"method": "oidc", "issuer": "i", "subject": "s", "dag": "demo_labels"},
        "database": "neo4j",
        "statement": "MATCH (a:Account) RETURN count(a) AS n",
        "parameters": {},
        "analysis": analysis.document,
        "decision": {"allow": False, "reasons": ["label_not_granted:Account"]},
    }
    data = json.loads((policies / "data.json").read_text(encoding="utf-8"))
    data["cyphergate"]["grants"]["dags"]["demo_labels"]["mode"] = "shadow"
    (policies / "data.json").write_text(json.dumps(data), encoding="utf-8")

    async def replayed() -> tuple[list[Change], ReplaySummary]:
        summary = ReplaySummary()
        with proposed_policy(ensure_opa(default_cache_dir()), policies) as settings:
            async with open_policy(settings, cache=False) as policy:
                return [change async for change in replay([record], policy, summary)], summary

    changes, summary = asyncio.run(replayed())
    assert summary.changed == 1
    (change,) = changes
    assert change.kind == "newly_run_in_shadow"
    assert not change.now_allow and change.now_reasons == ("label_not_granted:Account",)


def _ran(decision: dict[str, Any]) -> dict[str, Any]:
    """A decision record of demo_reader's that ran ``UNWIND range(1, 100) AS i RETURN i``."""
    return {
        "event": "decision",
        "seq": 3,
        "time": "2026-12-01T00:00:00Z",
        "principal": {"method": "oidc", "issuer": "i", "subject": "s", "dag": "demo_reader"},
        "database": "neo4j",
        "statement": "UNWIND range(1, 100) AS i RETURN i",
        "parameters": {},
        "analysis": Analysis(query_type="r", facts=PlanFacts()).document,
        "decision": decision,
    }


def _replayed(policies: Path, record: dict[str, Any]) -> tuple[list[Change], ReplaySummary]:
    async def run() -> tuple[list[Change], ReplaySummary]:
        summary = ReplaySummary()
        with proposed_policy(ensure_opa(default_cache_dir()), policies) as settings:
            async with open_policy(settings, cache=False) as policy:
                return [change async for change in replay([record], policy, summary)], summary

    return asyncio.run(run())


def test_a_proposed_policy_that_cuts_a_row_limit_or_timeout_is_a_change(policies: Path) -> None:
    """The same word (allowed, no reasons) under a row limit of 1 and a timeout of 1 ms: a
    pull request that cuts them would break the DAG, so ``--fail-on-change`` must catch it."""
    recorded = decided(policies).as_document()  # as the gateway records it, constraints included
    assert recorded["constraints"] == {
        "row_limit": None,
        "row_limit_action": "error",
        "timeout_ms": 30000,
    }
    record = _ran(recorded)
    unchanged, summary = _replayed(policies, record)
    assert unchanged == [] and summary.changed == 0 and summary.without_constraints == 0
    data = json.loads((policies / "data.json").read_text(encoding="utf-8"))
    grant = data["cyphergate"]["grants"]["dags"]["demo_reader"]["databases"]["neo4j"]
    grant.update(row_limit=1, row_limit_action="truncate", timeout_ms=1)
    (policies / "data.json").write_text(json.dumps(data), encoding="utf-8")
    (change,), summary = _replayed(policies, record)
    assert summary.changed == 1
    assert change.kind == "constraints_changed"
    assert change.was_allow and change.now_allow and change.now_reasons == ()
    assert change.was_constraints == recorded["constraints"]
    assert change.now_constraints == {
        "row_limit": 1,
        "row_limit_action": "truncate",
        "timeout_ms": 1,
    }


def test_an_older_record_without_constraints_compares_the_word_only(policies: Path) -> None:
    """Records written before decisions carried their constraints: nothing to compare them
    with, so they are counted, and the output says only allow and reasons were compared."""
    data = json.loads((policies / "data.json").read_text(encoding="utf-8"))
    grant = data["cyphergate"]["grants"]["dags"]["demo_reader"]["databases"]["neo4j"]
    grant.update(row_limit=1)
    (policies / "data.json").write_text(json.dumps(data), encoding="utf-8")
    changes, summary = _replayed(policies, _ran({"allow": True, "reasons": []}))
    assert changes == [] and summary.replayed == 1 and summary.without_constraints == 1


def test_replay_on_the_command_line_fails_on_a_cut_limit_and_names_older_records(
    policies: Path, tmp_path: Path
) -> None:
    """From an audit log through ``policy replay --fail-on-change``: the record that carries
    its constraints is a change (both limits printed); the older one is counted, and said."""
    log = tmp_path / "audit.sqlite3"
    principal: dict[str, str | int | None] = {
        "method": "oidc",
        "issuer": "i",
        "subject": "s",
        "dag": "demo_reader",
    }
    analysis = Analysis(query_type="r", facts=PlanFacts()).document
    recorded = decided(policies).as_document()  # as the gateway records it, constraints included

    async def write() -> None:
        async with SQLiteAuditLog(log) as audit:
            for decision in (recorded, {"allow": True, "reasons": []}):
                await audit.append(
                    AuditEvent(
                        event="decision",
                        time="2026-12-01T00:00:00.000000Z",
                        request_id="r",
                        principal=principal,
                        database="neo4j",
                        statement="UNWIND range(1, 100) AS i RETURN i",
                        analysis=analysis,
                        parameters={},
                        decision=decision,
                    )
                )

    asyncio.run(write())
    data = json.loads((policies / "data.json").read_text(encoding="utf-8"))
    grant = data["cyphergate"]["grants"]["dags"]["demo_reader"]["databases"]["neo4j"]
    grant.update(row_limit=1, row_limit_action="truncate")
    (policies / "data.json").write_text(json.dumps(data), encoding="utf-8")
    replayed = cyphergate(
        "policy", "replay", "--log", str(log), "--policies",
        str(policies), "--opa", str(ensure_opa(default_cache_dir())), "--fail-on-change",
    )  # fmt: skip
    assert replayed.returncode == 1, replayed.stderr
    lines = replayed.stdout.splitlines()
    assert lines[0].startswith("#1 ")
    assert lines[0].endswith(
        "demo_reader: allow [no row limit, timeout 30000 ms] -> "
        "allow [row_limit 1 (truncate), timeout 30000 ms]  UNWIND range(1, 100) AS i RETURN i"
    )
    assert lines[1:] == [
        "2 decisions replayed, 1 would change (0 records without an analysis skipped)",
        "1 allowed decisions were recorded without their constraints (older records): only allow"
        " and reasons compared for them",
    ]
