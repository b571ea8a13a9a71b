"""The local stack: real Neo4j, OPA, an OIDC provider and optionally the gateway, on loopback.

Used by ``cyphergate devstack``, the demo, the test suite and the benchmarks alike. Everything
lives in one run folder: a ``state.json`` (ports, process ids, generated credentials; readable
by its owner only; :mod:`proxy.devstack.state`), each service's log, Neo4j's data and the
gateway's configuration and audit log. :class:`DevStack` is the stack as its users see it; how
processes are supervised (:mod:`~proxy.devstack.supervisor`), how each service starts
(:mod:`~proxy.devstack.services`), the AWS inside moto (:mod:`~proxy.devstack.aws`) and the
gateway's configuration (:mod:`~proxy.devstack.gateway_config`) are modules of their own.
"""

from __future__ import annotations

import json
import secrets
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import tomli_w
from joserfc.jwk import RSAKey

from proxy.client import client_credentials_token
from proxy.devstack import aws, services
from proxy.devstack.gateway_config import audit_keys, gateway_config
from proxy.devstack.install import Components, install_all
from proxy.devstack.state import (
    ADMIN_SECRET,
    ARCHIVE_BUCKET,
    AUDIENCE,
    AWS_REGION,
    DATABASE,
    DEMO_CLIENTS,
    DEMO_PEOPLE,
    GATEWAY_SECRET,
    LEASE_PREFIX,
    PORT_NAMES,
    SERVER_ID,
    DemoClient,
    StackState,
    role_arn,
)
from proxy.devstack.supervisor import Supervisor
from proxy.ports import free_ports


class DevStack:
    """Installs, starts, describes and stops the local stack in ``run_dir``."""

    def __init__(
        self,
        run_dir: Path,
        *,
        cache_dir: Path,
        policies_dir: Path,
        extra_clients: Sequence[DemoClient] = (),
        configure_gateway: Callable[[dict[str, Any]], None] | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self.run_dir = run_dir.resolve()
        self.cache_dir = cache_dir
        self.policies_dir = policies_dir.resolve()
        self.clients = (*DEMO_CLIENTS, *extra_clients)
        self._configure_gateway = configure_gateway
        self._progress = progress or (lambda message: print(message, file=sys.stderr, flush=True))
        self._components: Components | None = None
        self._supervisor = Supervisor(self.run_dir, self.state_file)

    # ----------------------------------------------------------------- lifecycle

    @property
    def state_file(self) -> Path:
        return self.run_dir / "state.json"

    @property
    def gateway_config_path(self) -> Path:
        return self.run_dir / "gateway.toml"

    @property
    def audit_path(self) -> Path:
        return self.run_dir / "audit.sqlite3"

    def install(self) -> Components:
        """Install every component (cached after the first time)."""
        if self._components is None:
            self._components = install_all(self.cache_dir, self._progress)
        return self._components

    def up(self, *, with_gateway: bool = False) -> dict[str, Any]:
        """Start whatever is not running; return the status document."""
        components = self.install()
        state = self._load_or_create_state()
        if not self._supervisor.alive(state, "neo4j"):
            services.start_neo4j(self._supervisor, state, components, self.run_dir)
            state.save(self.state_file)
        for name in ("opa", "oidc", "moto"):
            if not self._supervisor.alive(state, name):
                self.start_service(name, state)
        if with_gateway and not self._supervisor.alive(state, "gateway"):
            self.start_service("gateway", state)
        return self.status()

    def down(self) -> list[str]:
        """Stop every process this stack started; return their names."""
        if not self.state_file.exists():
            return []
        state = self._state()
        stopped = [name for name in list(state.processes) if self.stop_service(name, state)]
        state.processes.clear()
        state.save(self.state_file)
        return stopped

    def start_service(self, name: str, state: StackState | None = None) -> None:
        """(Re)start one of opa, oidc, moto or gateway on its recorded port."""
        state = state or self._state()
        components = self.install()
        if name == "opa":
            services.start_opa(self._supervisor, state, components, self.policies_dir, self.run_dir)
        elif name == "oidc":
            services.start_oidc(self._supervisor, state, components, self.run_dir)
        elif name == "moto":
            services.start_moto(self._supervisor, state)
        elif name == "gateway":
            config = gateway_config(state, self.run_dir, audit_path=self.audit_path)
            if self._configure_gateway is not None:
                self._configure_gateway(config)
            self.gateway_config_path.write_text(tomli_w.dumps(config), encoding="utf-8")
            services.start_gateway(self._supervisor, state, self.gateway_config_path)
        else:
            raise ValueError(f"unknown service {name!r}")
        state.save(self.state_file)

    def stop_service(
        self, name: str, state: StackState | None = None, *, kill: bool = False
    ) -> bool:
        """Stop one service if it is still the process we started; True if it was running.

        ``kill`` sends SIGKILL at once, as a crash would, instead of asking it to stop.
        """
        return self._supervisor.stop(state or self._state(), name, kill=kill)

    def status(self) -> dict[str, Any]:
        """The documented status document (see the README)."""
        if not self.state_file.exists():
            return {"running": False, "run_dir": str(self.run_dir)}
        state = self._state()
        ports = state.ports
        alive = self._supervisor.alive
        document: dict[str, Any] = {
            "running": all(alive(state, name) for name in ("neo4j", "opa", "oidc", "moto")),
            "run_dir": str(self.run_dir),
            "neo4j": {
                "bolt_uri": f"bolt://127.0.0.1:{ports['neo4j_bolt']}",
                "http_uri": f"http://127.0.0.1:{ports['neo4j_http']}",
                **self._credentials(state),
                "database": DATABASE,
                "lease_user_prefix": LEASE_PREFIX,
            },
            "opa": {"url": f"http://127.0.0.1:{ports['opa']}", "policies": str(self.policies_dir)},
            "oidc": {
                "issuer": state.issuer(),
                "token_endpoint": state.issuer() + "/token",
                "audience": AUDIENCE,
                "clients": sorted(state.clients),
            },
            "aws": {
                "sts_url": state.sts_url(),
                "region": AWS_REGION,
                "server_id": SERVER_ID,
                "roles": {dag: role_arn(dag) for dag in state.dags()},
                "archive_bucket": ARCHIVE_BUCKET,
            },
            "processes": {
                name: {"pid": p.pid, "running": alive(state, name), "log": p.log}
                for name, p in state.processes.items()
            },
        }
        if alive(state, "gateway"):
            document["gateway_url"] = state.gateway_url()
            document["gateway_bolt_uri"] = state.gateway_bolt_uri()
            document["gateway_config"] = str(self.gateway_config_path)
            document["audit_log"] = str(self.audit_path)
            document["audit_public_key"] = str(audit_keys(self.run_dir)[1])
            document["audit_page"] = {
                "url": state.gateway_url() + "/audit/",
                "people": {
                    login: {"password": password, "reviewer": login == "demo_reviewer"}
                    for login, password in state.people.items()
                },
            }
        return document

    # ----------------------------------------------------------------- credentials

    def _credentials(self, state: StackState) -> dict[str, str]:
        """Neo4j's administrative and the gateway's credentials, as Secrets Manager has them
        (so they stay true after `cyphergate creds rotate-root`)."""
        if not (state.gateway_aws_keys and self._supervisor.alive(state, "moto")):
            return {"user": "neo4j", "password": state.neo4j_password}
        admin, gateway = aws.secret(state, ADMIN_SECRET), aws.secret(state, GATEWAY_SECRET)
        return {
            "user": admin["username"],
            "password": admin["password"],
            "gateway_user": gateway["username"],
            "gateway_password": gateway["password"],
            "gateway_secret": GATEWAY_SECRET,
        }

    def token(self, dag: str, *, audience: str = AUDIENCE) -> str:
        """A fresh access token from the provider for the demo client bound to ``dag``."""
        state = self._state()
        for client_id, client in state.clients.items():
            if client["dag_id"] == dag:
                return self.client_token(client_id, audience=audience)
        raise KeyError(f"no demo client is bound to DAG {dag!r}; known: {sorted(state.clients)}")

    def client_token(self, client_id: str, *, audience: str = AUDIENCE) -> str:
        """A fresh access token for one client, by the client-credentials grant."""
        state = self._state()
        if client_id not in state.clients:
            raise KeyError(f"no demo client {client_id!r}; known: {sorted(state.clients)}")
        token = client_credentials_token(
            state.issuer() + "/token",
            client_id,
            state.clients[client_id]["secret"],
            resource=audience,
            scope="cypher",
        )
        return token.access_token

    def auth_header(self, dag: str, *, method: str = "oidc") -> str:
        """A complete ``Authorization`` value for ``dag``: a bearer token or a fresh IAM proof."""
        if method == "oidc":
            return "Bearer " + self.token(dag)
        if method == "iam":
            return self.iam_header(role_arn(dag))
        raise ValueError(f"method must be oidc or iam, not {method!r}")

    def iam_header(self, role: str, *, server_id: str = SERVER_ID) -> str:
        """An IAM proof signed with credentials from ``AssumeRole`` on ``role`` (moto's STS)."""
        return aws.iam_header(self._state(), role, server_id=server_id)

    def rotate_oidc_keys(self, *, keep_previous: bool = True) -> str:
        """Give the provider a new signing key (first in its JWKS) and restart it; returns its kid.

        With ``keep_previous`` the old keys stay published, so tokens they signed still verify.
        """
        keys_file = self.run_dir / "oidc-keys.json"
        previous = (
            json.loads(keys_file.read_text(encoding="utf-8"))["keys"] if keep_previous else []
        )
        kid = f"devstack-{secrets.token_hex(6)}"
        key = RSAKey.generate_key(2048, parameters={"kid": kid, "use": "sig", "alg": "RS256"})
        keys_file.write_text(json.dumps({"keys": [key.as_dict(private=True), *previous]}))
        keys_file.chmod(0o600)
        self.stop_service("oidc")
        self.start_service("oidc")
        return kid

    def shell_env(self) -> dict[str, str]:
        """What a shell needs to use the running stack as the README does (``devstack env``):
        the gateway's URL and configuration, and the AWS credentials the gateway itself uses,
        so that commands reading its configuration reach moto's Secrets Manager as it does."""
        state = self._state()
        env = {**self.gateway_aws_env(state), "GATEWAY_CONFIG": str(self.gateway_config_path)}
        if self._supervisor.alive(state, "gateway"):
            env["GATEWAY"] = state.gateway_url()
        return env

    def gateway_aws_env(self, state: StackState | None = None) -> dict[str, str]:
        """The environment of a process acting as the gateway towards AWS (moto)."""
        return aws.gateway_aws_env(state or self._state())

    def secret(self, name: str, state: StackState | None = None) -> dict[str, str]:
        """A Neo4j credential as Secrets Manager holds it now (AWSCURRENT)."""
        return aws.secret(state or self._state(), name)

    def sts_url(self, state: StackState | None = None) -> str:
        return (state or self._state()).sts_url()

    def issuer(self, state: StackState | None = None) -> str:
        return (state or self._state()).issuer()

    # ----------------------------------------------------------------- state

    def _state(self) -> StackState:
        return StackState.load(self.state_file)

    def _load_or_create_state(self) -> StackState:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.run_dir.chmod(0o700)
        if self.state_file.exists():
            # A state written for other clients or services (an older version) is started afresh.
            try:
                state: StackState | None = StackState.load(self.state_file)
            except (ValueError, TypeError, KeyError):
                state = None
            if (
                state is not None
                and set(PORT_NAMES) <= set(state.ports)
                and all(c.client_id in state.clients for c in self.clients)
                and set(state.people) == set(DEMO_PEOPLE)
            ):
                return state
            if state is not None:
                self.down()
        state = StackState(
            run_dir=str(self.run_dir),
            ports=dict(zip(PORT_NAMES, free_ports(len(PORT_NAMES)), strict=True)),
            neo4j_password=secrets.token_urlsafe(18),
            gateway_password=secrets.token_urlsafe(18),
            clients={
                c.client_id: {
                    "dag_id": c.dag_id,
                    "secret": secrets.token_urlsafe(24),
                    "token_ttl_s": c.token_ttl_s,
                }
                for c in self.clients
            },
            people={login: secrets.token_urlsafe(12) for login in DEMO_PEOPLE},
            web_client_secret=secrets.token_urlsafe(24),
        )
        state.save(self.state_file)
        return state
