"""The local stack's names and its ``state.json``: ports, processes, generated credentials.

Everything the stack's other modules share: the demo's clients, people and DAGs, the fixed names
(audience, server id, secrets, bucket), and :class:`StackState`, readable by its owner only.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

AUDIENCE = "urn:cyphergate:gateway"
OTHER_AUDIENCE = "urn:cyphergate:some-other-service"
GATEWAY_NEO4J_USER = "cyphergate"
DATABASE = "neo4j"
SERVER_ID = "cyphergate-devstack"
AWS_REGION = "us-east-1"
AWS_ACCOUNT = "123456789012"  # moto's default account
ARCHIVE_BUCKET = "cyphergate-audit-archive"
# Signed policy bundles (bundle mode): CI's publisher writes them, OPA's own user reads them.
POLICY_BUCKET = "cyphergate-policy-bundles"
# The stack's Neo4j credentials live in moto's Secrets Manager; the gateway reads (and rotates)
# its own there, and `status` reports both from there.
GATEWAY_SECRET = "cyphergate/neo4j-gateway"  # noqa: S105 - the name, not the value
ADMIN_SECRET = "cyphergate/neo4j-admin"  # noqa: S105 - the name, not the value
LEASE_PREFIX = "cg_devstack_"
# The ports a stack needs, each found free when its state is made.
PORT_NAMES = (
    "neo4j_bolt",
    "neo4j_http",
    "opa",
    "opa_bundles",
    "oidc",
    "moto",
    "gateway",
    "gateway_bolt",
)


@dataclass(frozen=True, slots=True)
class DemoClient:
    """An OAuth client of the stack's OIDC provider.

    With ``dag_id`` the provider asserts that DAG in the token's ``dag_id`` claim; without it
    the token carries no DAG, and only a gateway binding can map it to one.
    """

    client_id: str
    dag_id: str | None
    token_ttl_s: int = 300


DEMO_CLIENTS = (
    DemoClient("demo_reader", "demo_reader"),
    DemoClient("demo_writer", "demo_writer"),
    # Least privilege by label: reads :Person and :Movie, writes :Person, follows :ACTED_IN.
    DemoClient("demo_labels", "demo_labels"),
    # A real DAG identity that the policies grant nothing: every request it makes is denied.
    DemoClient("demo_unlisted", "demo_unlisted"),
    # The identities of the Airflow provider's example DAGs (proxy/airflow/example_dags).
    DemoClient("cyphergate_example_oidc", "cyphergate_example_oidc"),
    DemoClient("cyphergate_example_iam", "cyphergate_example_iam"),
    DemoClient("cyphergate_example_denied", "cyphergate_example_denied"),
    DemoClient("cyphergate_example_token_file", "cyphergate_example_token_file"),
    DemoClient("cyphergate_example_neo4j", "cyphergate_example_neo4j"),
    DemoClient("cyphergate_example_lineage", "cyphergate_example_lineage"),
    DemoClient("cyphergate_example_sensor", "cyphergate_example_sensor"),
    # A reviewer tool, not a DAG: the policies let it read the audit log, and nothing else.
    DemoClient("demo_auditor", None),
)


# People who sign in to the reviewers' page (authorization code with PKCE) at the stack's
# provider. The policies make demo_reviewer a reviewer; demo_visitor can sign in but is refused.
DEMO_PEOPLE = {"demo_reviewer": "Demo Reviewer", "demo_visitor": "Demo Visitor"}
AUDIT_WEB_CLIENT = "cyphergate_audit_web"


@dataclass
class Process:
    """A process the stack started."""

    pid: int
    command: list[str]
    log: str
    # The kernel's start time of the process: with the pid, it names the process uniquely, so a
    # recycled pid is never mistaken for ours.
    started: int = 0


@dataclass
class StackState:
    """What ``state.json`` holds."""

    run_dir: str
    ports: dict[str, int]
    neo4j_password: str
    gateway_password: str
    clients: dict[str, dict[str, Any]]
    processes: dict[str, Process] = field(default_factory=dict)
    aws_user_keys: dict[str, str] = field(default_factory=dict)
    archiver_keys: dict[str, str] = field(default_factory=dict)
    # The gateway's AWS user: it may read and rotate its Neo4j secret in Secrets Manager.
    gateway_aws_keys: dict[str, str] = field(default_factory=dict)
    # Bundle mode: who publishes policy bundles, and OPA's read-only user of their bucket.
    policy_publisher_keys: dict[str, str] = field(default_factory=dict)
    opa_bundle_keys: dict[str, str] = field(default_factory=dict)
    # login -> password of DEMO_PEOPLE, and the reviewers' page's OAuth client secret.
    people: dict[str, str] = field(default_factory=dict)
    web_client_secret: str = ""

    @classmethod
    def load(cls, path: Path) -> StackState:
        raw = json.loads(path.read_text(encoding="utf-8"))
        raw["processes"] = {name: Process(**p) for name, p in raw.get("processes", {}).items()}
        return cls(**raw)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2), encoding="utf-8")
        path.chmod(0o600)

    def sts_url(self) -> str:
        """moto's endpoint: STS, IAM, S3 and Secrets Manager."""
        return f"http://127.0.0.1:{self.ports['moto']}/"

    def issuer(self) -> str:
        """The OIDC provider's issuer URL."""
        return f"http://127.0.0.1:{self.ports['oidc']}"

    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['gateway']}"

    def gateway_bolt_uri(self) -> str:
        return f"bolt://127.0.0.1:{self.ports['gateway_bolt']}"

    def dags(self) -> list[str]:
        """The DAGs the demo clients are bound to."""
        return sorted({c["dag_id"] for c in self.clients.values() if c["dag_id"]})


def role_arn(dag: str) -> str:
    """The IAM role the stack creates for a demo DAG."""
    return f"arn:aws:iam::{AWS_ACCOUNT}:role/cyphergate-{dag}"
