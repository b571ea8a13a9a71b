"""How each service of the local stack starts: its command line, its configuration, and what
is set up in it once it runs (Neo4j's users, moto's AWS)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

from neo4j import GraphDatabase

from proxy.devstack.aws import gateway_aws_env, set_up_aws
from proxy.devstack.install import Components
from proxy.devstack.state import (
    AUDIENCE,
    AUDIT_WEB_CLIENT,
    DEMO_PEOPLE,
    GATEWAY_NEO4J_USER,
    OTHER_AUDIENCE,
    StackState,
)
from proxy.devstack.supervisor import Supervisor
from proxy.opa_server import folder_bundle_config, opa_bundle_command


def start_neo4j(
    supervisor: Supervisor, state: StackState, components: Components, run_dir: Path
) -> None:
    """Neo4j on a fresh store, auth on: the initial password replaced, the gateway's user made."""
    data = run_dir / "neo4j-data"
    shutil.rmtree(data, ignore_errors=True)  # the initial password is set on a fresh store
    command = [
        "java",
        "-Xms256m",
        "-Xmx1g",
        "-XX:+UseSerialGC",
        "-cp",
        components.neo4j_classpath,
        "Neo4jLauncher",
        str(state.ports["neo4j_bolt"]),
        str(state.ports["neo4j_http"]),
        str(data),
    ]
    supervisor.spawn(state, "neo4j", command)
    supervisor.wait_log(state, "neo4j", "READY ")
    supervisor.wait_port(state, "neo4j", state.ports["neo4j_bolt"])
    _set_up_neo4j_users(state)


def _set_up_neo4j_users(state: StackState) -> None:
    uri = f"bolt://127.0.0.1:{state.ports['neo4j_bolt']}"
    with GraphDatabase.driver(uri, auth=("neo4j", "neo4j")) as driver:
        driver.execute_query(
            "ALTER CURRENT USER SET PASSWORD FROM 'neo4j' TO $new",
            new=state.neo4j_password,
            database_="system",
        )
    with GraphDatabase.driver(uri, auth=("neo4j", state.neo4j_password)) as driver:
        driver.execute_query(
            f"CREATE USER {GATEWAY_NEO4J_USER} IF NOT EXISTS "
            "SET PASSWORD $password CHANGE NOT REQUIRED",
            password=state.gateway_password,
            database_="system",
        )


def start_opa(
    supervisor: Supervisor,
    state: StackState,
    components: Components,
    policies: Path,
    run_dir: Path,
) -> None:
    """OPA serving ``policies`` as a bundle from the folder server (started first if it is not
    running), applying edits as they are made, logging every decision to its output."""
    bundles = state.ports["opa_bundles"]
    if not supervisor.alive(state, "opa_bundles"):
        command = [
            *(sys.executable, "-m", "proxy", "policy", "serve"),
            *("--policies", str(policies), "--port", str(bundles), "--opa", str(components.opa)),
        ]
        supervisor.spawn(state, "opa_bundles", command)
        supervisor.wait_log(state, "opa_bundles", "serving ")
    config = run_dir / "opa.json"
    config.write_text(json.dumps(folder_bundle_config(f"http://127.0.0.1:{bundles}")))
    port = state.ports["opa"]
    supervisor.spawn(state, "opa", opa_bundle_command(components.opa, port, config))
    supervisor.wait_http(state, "opa", f"http://127.0.0.1:{port}/health?bundles")


def start_oidc(
    supervisor: Supervisor, state: StackState, components: Components, run_dir: Path
) -> None:
    """The OIDC provider with the demo's clients and people."""
    config = run_dir / "oidc.json"
    config.write_text(json.dumps(oidc_config(state, run_dir)), encoding="utf-8")
    config.chmod(0o600)
    command = ["node", str(components.oidc_dir / "server.mjs"), str(config)]
    supervisor.spawn(state, "oidc", command, cwd=components.oidc_dir)
    supervisor.wait_http(state, "oidc", state.issuer() + "/.well-known/openid-configuration")


def oidc_config(state: StackState, run_dir: Path) -> dict[str, Any]:
    """The provider's configuration (proxy/devstack/assets/oidc/server.mjs reads it)."""
    return {
        "issuer": state.issuer(),
        "port": state.ports["oidc"],
        "audience": AUDIENCE,
        "resources": [AUDIENCE, OTHER_AUDIENCE],
        "keys_file": str(run_dir / "oidc-keys.json"),
        "clients": [
            {
                "client_id": cid,
                "client_secret": c["secret"],
                "dag_id": c["dag_id"],
                "token_ttl": c["token_ttl_s"],
            }
            for cid, c in state.clients.items()
        ],
        "web_clients": [
            {
                "client_id": AUDIT_WEB_CLIENT,
                "client_secret": state.web_client_secret,
                "redirect_uris": [state.gateway_url() + "/audit/callback"],
            }
        ],
        "people": [
            {"login": login, "password": state.people[login], "name": name}
            for login, name in DEMO_PEOPLE.items()
        ],
    }


def start_moto(supervisor: Supervisor, state: StackState) -> None:
    """moto in server mode as STS, IAM, S3 and Secrets Manager, then the stack's AWS in it."""
    port = state.ports["moto"]
    command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    supervisor.spawn(state, "moto", command)
    supervisor.wait_http(state, "moto", f"http://127.0.0.1:{port}/moto-api/")
    set_up_aws(state)


def start_gateway(supervisor: Supervisor, state: StackState, config: Path) -> None:
    """``cyphergate serve`` with ``config``, as the gateway's AWS user; until it is ready."""
    command = [sys.executable, "-m", "proxy", "serve", "--config", str(config)]
    supervisor.spawn(state, "gateway", command, env=gateway_aws_env(state))
    supervisor.wait_http(state, "gateway", state.gateway_url() + "/readyz")
