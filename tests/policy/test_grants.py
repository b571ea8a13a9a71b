"""The grants a security team edits are checked like code: schema, and reasons that exist."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest

POLICIES = Path(__file__).resolve().parents[2] / "policies"
README = POLICIES.parent / "README.md"


def test_data_json_matches_the_grants_schema() -> None:
    schema = json.loads((POLICIES / "schemas/grants.json").read_text(encoding="utf-8"))
    data = json.loads((POLICIES / "data.json").read_text(encoding="utf-8"))
    jsonschema.validate(data, schema)


@pytest.mark.parametrize(
    "mistake",
    [
        {"guardrails": ["fullscan"]},
        {"read": {"lables": ["Person"]}},
        {"row_limit_action": "drop"},
        {"write": True},
    ],
)
def test_the_schema_catches_misspellings(mistake: dict[str, object]) -> None:
    schema = json.loads((POLICIES / "schemas/grants.json").read_text(encoding="utf-8"))
    data = {
        "cyphergate": {
            "grants": {"dags": {"x": {"databases": {"neo4j": mistake}}}},
            "reviewers": [],
        }
    }
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, schema)


def test_every_documented_reason_is_produced_by_the_engine() -> None:
    """A reason the README promises must exist in authz.rego (and the other way round)."""
    engine = (POLICIES / "authz.rego").read_text(encoding="utf-8")
    produced = set(re.findall(r'reasons contains (?:sprintf\()?"([a-z_]+)', engine))
    section = README.read_text(encoding="utf-8").split("## Policies", 1)[1].split("\n## ", 1)[0]
    documented = set(
        re.findall(
            r"`([a-z_]+_not_granted|guardrail|unknown_[a-z_]+|plan_not_understood)[:`]", section
        )
    )
    assert documented == produced, (documented - produced, produced - documented)
