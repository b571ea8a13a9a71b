"""The local stack: real Neo4j, OPA, an OIDC provider and optionally the gateway, on loopback.

Used by ``cyphergate devstack``, the demo, the test suite and the benchmarks alike. Everything
lives in one run folder: a ``state.json`` (ports, process ids, generated credentials; readable
by its owner only), each service's log, Neo4j's data and the gateway's configuration and audit
log. Services are started in their own sessions so they outlive the command that started them;
``down`` stops exactly the processes recorded in the state, after checking that each pid still
runs the command line it was started with.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import boto3
import httpx
import tomli_w
from joserfc.jwk import RSAKey
from neo4j import GraphDatabase

from proxy.audit.checkpoint import write_keys
from proxy.client import client_credentials_token, iam_authorization
from proxy.devstack.install import Components, install_all
from proxy.opa_server import opa_server_command
from proxy.ports import free_ports

AUDIENCE = "urn:cyphergate:gateway"
OTHER_AUDIENCE = "urn:cyphergate:some-other-service"
GATEWAY_NEO4J_USER = "cyphergate"
DATABASE = "neo4j"
START_TIMEOUT_S = 180.0
SERVER_ID = "cyphergate-devstack"
AWS_REGION = "us-east-1"
AWS_ACCOUNT = "123456789012"  # moto's default account
ARCHIVE_BUCKET = "cyphergate-audit-archive"
# The stack's Neo4j credentials live in moto's Secrets Manager; the gateway reads (and rotates)
# its own there, and `status` reports both from there.
GATEWAY_SECRET = "cyphergate/neo4j-gateway"  # noqa: S105 - the name, not the value
ADMIN_SECRET = "cyphergate/neo4j-admin"  # noqa: S105 - the name, not the value
LEASE_PREFIX = "cg_devstack_"


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
    # A reviewer tool, not a DAG: the policies let it read the audit log, and nothing else.
    DemoClient("demo_auditor", None),
)


# People who sign in to the reviewers' page (authorization code with PKCE) at the stack's
# provider. The policies make demo_reviewer a reviewer; demo_visitor can sign in but is refused.
DEMO_PEOPLE = {"demo_reviewer": "Demo Reviewer", "demo_visitor": "Demo Visitor"}
AUDIT_WEB_CLIENT = "cyphergate_audit_web"


class StackError(RuntimeError):
    """A service of the stack failed to start; the message includes its log's tail."""


@dataclass
class _Process:
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
    processes: dict[str, _Process] = field(default_factory=dict)
    aws_user_keys: dict[str, str] = field(default_factory=dict)
    archiver_keys: dict[str, str] = field(default_factory=dict)
    # The gateway's AWS user: it may read and rotate its Neo4j secret in Secrets Manager.
    gateway_aws_keys: dict[str, str] = field(default_factory=dict)
    # login -> password of DEMO_PEOPLE, and the reviewers' page's OAuth client secret.
    people: dict[str, str] = field(default_factory=dict)
    web_client_secret: str = ""

    @classmethod
    def load(cls, path: Path) -> StackState:
        raw = json.loads(path.read_text(encoding="utf-8"))
        raw["processes"] = {name: _Process(**p) for name, p in raw.get("processes", {}).items()}
        return cls(**raw)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2), encoding="utf-8")
        path.chmod(0o600)


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
        # Handles of the processes this object started, so they are reaped (not left as zombies).
        self._children: dict[int, subprocess.Popen[bytes]] = {}

    # ----------------------------------------------------------------- lifecycle

    @property
    def state_file(self) -> Path:
        return self.run_dir / "state.json"

    def install(self) -> Components:
        """Install every component (cached after the first time)."""
        if self._components is None:
            self._components = install_all(self.cache_dir, self._progress)
        return self._components

    def up(self, *, with_gateway: bool = False) -> dict[str, Any]:
        """Start whatever is not running; return the status document."""
        self.install()
        state = self._load_or_create_state()
        if not self._alive(state, "neo4j"):
            self._start_neo4j(state)
        for name in ("opa", "oidc", "moto"):
            if not self._alive(state, name):
                self.start_service(name, state)
        if with_gateway and not self._alive(state, "gateway"):
            self.start_service("gateway", state)
        return self.status()

    def down(self) -> list[str]:
        """Stop every process this stack started; return their names."""
        if not self.state_file.exists():
            return []
        state = StackState.load(self.state_file)
        stopped = [name for name in list(state.processes) if self.stop_service(name, state)]
        state.processes.clear()
        state.save(self.state_file)
        return stopped

    def status(self) -> dict[str, Any]:
        """The documented status document (see the README)."""
        if not self.state_file.exists():
            return {"running": False, "run_dir": str(self.run_dir)}
        state = StackState.load(self.state_file)
        ports = state.ports
        document: dict[str, Any] = {
            "running": all(self._alive(state, name) for name in ("neo4j", "opa", "oidc", "moto")),
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
                "issuer": self.issuer(state),
                "token_endpoint": self.issuer(state) + "/token",
                "audience": AUDIENCE,
                "clients": sorted(state.clients),
            },
            "aws": {
                "sts_url": self.sts_url(state),
                "region": AWS_REGION,
                "server_id": SERVER_ID,
                "roles": {dag: role_arn(dag) for dag in self._dags(state)},
                "archive_bucket": ARCHIVE_BUCKET,
            },
            "processes": {
                name: {"pid": p.pid, "running": self._alive(state, name), "log": p.log}
                for name, p in state.processes.items()
            },
        }
        if self._alive(state, "gateway"):
            document["gateway_url"] = self._gateway_url(state)
            document["gateway_config"] = str(self.gateway_config_path)
            document["audit_log"] = str(self.audit_path)
            document["audit_public_key"] = str(self._audit_keys()[1])
            document["audit_page"] = {
                "url": self._gateway_url(state) + "/audit/",
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
        if not (state.gateway_aws_keys and self._alive(state, "moto")):
            return {"user": "neo4j", "password": state.neo4j_password}
        admin, gateway = self.secret(ADMIN_SECRET, state), self.secret(GATEWAY_SECRET, state)
        return {
            "user": admin["username"],
            "password": admin["password"],
            "gateway_user": gateway["username"],
            "gateway_password": gateway["password"],
            "gateway_secret": GATEWAY_SECRET,
        }

    def token(self, dag: str, *, audience: str = AUDIENCE) -> str:
        """A fresh access token from the provider for the demo client bound to ``dag``."""
        state = StackState.load(self.state_file)
        for client_id, client in state.clients.items():
            if client["dag_id"] == dag:
                return self.client_token(client_id, audience=audience)
        raise KeyError(f"no demo client is bound to DAG {dag!r}; known: {sorted(state.clients)}")

    def client_token(self, client_id: str, *, audience: str = AUDIENCE) -> str:
        """A fresh access token for one client, by the client-credentials grant."""
        state = StackState.load(self.state_file)
        token = client_credentials_token(
            self.issuer(state) + "/token",
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
        state = StackState.load(self.state_file)
        keys = state.aws_user_keys
        sts = boto3.client(
            "sts",
            endpoint_url=self.sts_url(state),
            region_name=AWS_REGION,
            aws_access_key_id=keys["id"],
            aws_secret_access_key=keys["secret"],
        )
        credentials = sts.assume_role(RoleArn=role, RoleSessionName="airflow-worker")["Credentials"]
        session = boto3.Session(
            aws_access_key_id=credentials["AccessKeyId"],
            aws_secret_access_key=credentials["SecretAccessKey"],
            aws_session_token=credentials["SessionToken"],
            region_name=AWS_REGION,
        )
        return iam_authorization(
            session, server_id=server_id, sts_url=self.sts_url(state), region=AWS_REGION
        )

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

    def gateway_aws_env(self, state: StackState | None = None) -> dict[str, str]:
        """The environment of a process acting as the gateway towards AWS (moto)."""
        keys = (state or StackState.load(self.state_file)).gateway_aws_keys
        return {
            "AWS_ACCESS_KEY_ID": keys["id"],
            "AWS_SECRET_ACCESS_KEY": keys["secret"],
            "AWS_DEFAULT_REGION": AWS_REGION,
        }

    def secret(self, name: str, state: StackState | None = None) -> dict[str, str]:
        """A Neo4j credential as Secrets Manager holds it now (AWSCURRENT)."""
        state = state or StackState.load(self.state_file)
        client = boto3.client(
            "secretsmanager",
            endpoint_url=self.sts_url(state),
            region_name=AWS_REGION,
            aws_access_key_id=state.gateway_aws_keys["id"],
            aws_secret_access_key=state.gateway_aws_keys["secret"],
        )
        # Name the stage: moto's default version does not follow update_secret_version_stage.
        answer = client.get_secret_value(SecretId=name, VersionStage="AWSCURRENT")
        value: dict[str, str] = json.loads(answer["SecretString"])
        return value

    def sts_url(self, state: StackState | None = None) -> str:
        state = state or StackState.load(self.state_file)
        return f"http://127.0.0.1:{state.ports['moto']}/"

    def _dags(self, state: StackState) -> list[str]:
        return sorted({c["dag_id"] for c in state.clients.values() if c["dag_id"]})

    def issuer(self, state: StackState | None = None) -> str:
        state = state or StackState.load(self.state_file)
        return f"http://127.0.0.1:{state.ports['oidc']}"

    # ----------------------------------------------------------------- services

    @property
    def gateway_config_path(self) -> Path:
        return self.run_dir / "gateway.toml"

    @property
    def audit_path(self) -> Path:
        return self.run_dir / "audit.sqlite3"

    def start_service(self, name: str, state: StackState | None = None) -> None:
        """(Re)start one of opa, oidc or gateway on its recorded port."""
        state = state or StackState.load(self.state_file)
        components = self.install()
        ports = state.ports
        if name == "opa":
            command = opa_server_command(
                components.opa, ports["opa"], self.policies_dir, watch=True
            )
            self._spawn(state, name, command)
            self._wait_http(state, name, f"http://127.0.0.1:{ports['opa']}/health")
        elif name == "oidc":
            config = self.run_dir / "oidc.json"
            config.write_text(json.dumps(self._oidc_config(state)), encoding="utf-8")
            config.chmod(0o600)
            command = ["node", str(components.oidc_dir / "server.mjs"), str(config)]
            self._spawn(state, name, command, cwd=components.oidc_dir)
            self._wait_http(state, name, self.issuer(state) + "/.well-known/openid-configuration")
        elif name == "moto":
            command = [
                sys.executable,
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                str(ports["moto"]),
            ]
            self._spawn(state, name, command)
            self._wait_http(state, name, f"http://127.0.0.1:{ports['moto']}/moto-api/")
            self._set_up_aws(state)
        elif name == "gateway":
            self._write_gateway_config(state)
            command = [
                sys.executable,
                "-m",
                "proxy",
                "serve",
                "--config",
                str(self.gateway_config_path),
            ]
            self._spawn(state, name, command, env=self.gateway_aws_env(state))
            self._wait_http(state, name, f"http://127.0.0.1:{ports['gateway']}/readyz")
        else:
            raise ValueError(f"unknown service {name!r}")
        state.save(self.state_file)

    def stop_service(
        self, name: str, state: StackState | None = None, *, kill: bool = False
    ) -> bool:
        """Stop one service if it is still the process we started; True if it was running.

        ``kill`` sends SIGKILL at once, as a crash would, instead of asking it to stop.
        """
        state = state or StackState.load(self.state_file)
        process = state.processes.get(name)
        if process is None or not self._alive(state, name):
            return False
        try:
            os.killpg(process.pid, signal.SIGKILL if kill else signal.SIGTERM)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and _running(process.pid):
                time.sleep(0.1)
            if _running(process.pid):
                os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        child = self._children.pop(process.pid, None)
        if child is not None:
            child.wait(timeout=10)
        else:
            _reap(process.pid)
        state.save(self.state_file)
        return True

    def _start_neo4j(self, state: StackState) -> None:
        components = self.install()
        data = self.run_dir / "neo4j-data"
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
        self._spawn(state, "neo4j", command)
        self._wait_log(state, "neo4j", "READY ")
        self._wait_port(state, "neo4j", state.ports["neo4j_bolt"])
        self._set_up_neo4j_users(state)
        state.save(self.state_file)

    def _set_up_neo4j_users(self, state: StackState) -> None:
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

    def _set_up_aws(self, state: StackState) -> None:
        """IAM in moto: a worker user that may assume one role per demo DAG; then auth on."""
        endpoint = self.sts_url(state)

        def bootstrap(service: Literal["iam", "s3", "secretsmanager"]) -> Any:
            # moto accepts any key until auth is switched on at the end of this method.
            return boto3.client(
                service,
                endpoint_url=endpoint,
                region_name=AWS_REGION,
                aws_access_key_id="bootstrap",
                aws_secret_access_key="bootstrap",  # noqa: S106
            )

        iam = bootstrap("iam")

        def document(statement: dict[str, Any]) -> str:
            return json.dumps({"Version": "2012-10-17", "Statement": [statement]})

        def user_with(name: str, policy: str, actions: list[str], resource: Any) -> dict[str, str]:
            """An IAM user allowed ``actions`` on ``resource``, and its access key."""
            iam.create_user(UserName=name)
            allow = {"Effect": "Allow", "Action": actions, "Resource": resource}
            iam.put_user_policy(UserName=name, PolicyName=policy, PolicyDocument=document(allow))
            key = iam.create_access_key(UserName=name)["AccessKey"]
            return {"id": key["AccessKeyId"], "secret": key["SecretAccessKey"]}

        # The Airflow worker may assume one role per demo DAG.
        worker = user_with(
            "airflow-worker", "assume-dag-roles", ["sts:AssumeRole", "sts:GetCallerIdentity"], "*"
        )
        trust = {
            "Effect": "Allow",
            "Principal": {"AWS": f"arn:aws:iam::{AWS_ACCOUNT}:user/airflow-worker"},
            "Action": "sts:AssumeRole",
        }
        whoami = {"Effect": "Allow", "Action": "sts:GetCallerIdentity", "Resource": "*"}
        for dag in self._dags(state):
            role = role_arn(dag).rsplit("/", 1)[1]
            iam.create_role(RoleName=role, AssumeRolePolicyDocument=document(trust))
            iam.put_role_policy(RoleName=role, PolicyName="whoami", PolicyDocument=document(whoami))
        # The audit archive: a bucket with Object Lock, and a user that may only write and read it.
        bootstrap("s3").create_bucket(Bucket=ARCHIVE_BUCKET, ObjectLockEnabledForBucket=True)
        archiver = user_with(
            "audit-archiver",
            "archive",
            [
                "s3:PutObject",
                "s3:GetObject",
                "s3:GetObjectVersion",
                "s3:ListBucket",
                "s3:ListBucketVersions",
                "s3:DeleteObject",
                "s3:DeleteObjectVersion",
            ],
            [f"arn:aws:s3:::{ARCHIVE_BUCKET}", f"arn:aws:s3:::{ARCHIVE_BUCKET}/*"],
        )
        # The Neo4j credentials, in Secrets Manager; the gateway's user may read and rotate them.
        secrets_manager = bootstrap("secretsmanager")
        for name, user, password in (
            (GATEWAY_SECRET, GATEWAY_NEO4J_USER, state.gateway_password),
            (ADMIN_SECRET, "neo4j", state.neo4j_password),
        ):
            secrets_manager.create_secret(
                Name=name, SecretString=json.dumps({"username": user, "password": password})
            )
        gateway = user_with(
            "cyphergate-gateway",
            "neo4j-secrets",
            [
                "secretsmanager:GetSecretValue",
                "secretsmanager:PutSecretValue",
                "secretsmanager:ListSecretVersionIds",
                "secretsmanager:UpdateSecretVersionStage",
                "secretsmanager:DescribeSecret",
                # Tests give second gateways secrets of their own, and scan all of them.
                "secretsmanager:CreateSecret",
                "secretsmanager:ListSecrets",
            ],
            "*",
        )
        # From here on moto checks every request's signature, as AWS does.
        httpx.post(endpoint + "moto-api/reset-auth", content=b"0", timeout=10).raise_for_status()
        state.aws_user_keys, state.archiver_keys, state.gateway_aws_keys = worker, archiver, gateway

    def _oidc_config(self, state: StackState) -> dict[str, Any]:
        return {
            "issuer": self.issuer(state),
            "port": state.ports["oidc"],
            "audience": AUDIENCE,
            "resources": [AUDIENCE, OTHER_AUDIENCE],
            "keys_file": str(self.run_dir / "oidc-keys.json"),
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
                    "redirect_uris": [self._gateway_url(state) + "/audit/callback"],
                }
            ],
            "people": [
                {"login": login, "password": state.people[login], "name": name}
                for login, name in DEMO_PEOPLE.items()
            ],
        }

    def _gateway_url(self, state: StackState) -> str:
        return f"http://127.0.0.1:{state.ports['gateway']}"

    def _write_gateway_config(self, state: StackState) -> None:
        signing_key, _, hmac_key = self._audit_keys()
        web_secret = _write_secret(
            self.run_dir / "audit-web-client-secret", state.web_client_secret
        )
        session_key = self.run_dir / "audit-web-session-key"
        if not session_key.exists():  # kept, so sessions survive a gateway restart
            _write_secret(session_key, secrets.token_urlsafe(48))
        config: dict[str, Any] = {
            "server": {"host": "127.0.0.1", "port": state.ports["gateway"]},
            "neo4j": {
                "uri": f"bolt://127.0.0.1:{state.ports['neo4j_bolt']}",
                "user": GATEWAY_NEO4J_USER,
                "secret": {
                    "source": "aws_secrets_manager",
                    "secret_id": GATEWAY_SECRET,
                    "endpoint_url": self.sts_url(state).rstrip("/"),
                    "region": AWS_REGION,
                    "refresh_interval_s": 5.0,
                },
                "credentials": "leases",
                "lease_user_prefix": LEASE_PREFIX,
                "lease_ttl_s": 300.0,
                "leases_path": str(self.run_dir / "leases.sqlite3"),
            },
            "opa": {"url": f"http://127.0.0.1:{state.ports['opa']}"},
            "auth": {
                "oidc": [
                    {"issuer": self.issuer(state), "audiences": [AUDIENCE], "dag_claim": "dag_id"}
                ],
                "aws_iam": {"sts_endpoints": [self.sts_url(state)], "server_id": SERVER_ID},
                "bindings": [
                    {"iam_role_arn": role_arn(dag), "dags": [dag]} for dag in self._dags(state)
                ],
            },
            "audit": {
                "path": str(self.audit_path),
                "signing_key_file": str(signing_key),
                "hmac_key_file": str(hmac_key),
                "archive": {
                    "bucket": ARCHIVE_BUCKET,
                    "endpoint_url": self.sts_url(state).rstrip("/"),
                    "region": AWS_REGION,
                    "retention_days": 1,
                },
                "web": {
                    "issuer": self.issuer(state),
                    "client_id": AUDIT_WEB_CLIENT,
                    "client_secret_file": str(web_secret),
                    "public_url": self._gateway_url(state),
                    "session_secret_file": str(session_key),
                    # The stack serves plain HTTP on loopback.
                    "secure_cookies": False,
                },
            },
        }
        if self._configure_gateway is not None:
            self._configure_gateway(config)
        self.gateway_config_path.write_text(tomli_w.dumps(config), encoding="utf-8")

    def _audit_keys(self) -> tuple[Path, Path, Path]:
        """The audit signing key pair and HMAC key, made once per run folder."""
        directory = self.run_dir / "audit-keys"
        private, public, hmac_key = (
            directory / "audit-signing-key.pem",
            directory / "audit-signing-key.pub.pem",
            directory / "audit-hmac.key",
        )
        if not private.exists():
            return write_keys(directory)
        return private, public, hmac_key

    def _load_or_create_state(self) -> StackState:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.run_dir.chmod(0o700)
        names = ("neo4j_bolt", "neo4j_http", "opa", "oidc", "moto", "gateway")
        if self.state_file.exists():
            # A state written for other clients or services (an older version) is started afresh.
            try:
                state = StackState.load(self.state_file)
            except (ValueError, TypeError, KeyError):
                state = None
            if (
                state is not None
                and set(names) <= set(state.ports)
                and all(c.client_id in state.clients for c in self.clients)
                and set(state.people) == set(DEMO_PEOPLE)
            ):
                return state
            if state is not None:
                self.down()
        state = StackState(
            run_dir=str(self.run_dir),
            ports=dict(zip(names, free_ports(len(names)), strict=True)),
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

    def _spawn(
        self,
        state: StackState,
        name: str,
        command: list[str],
        *,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        log = self.run_dir / f"{name}.log"
        with log.open("ab") as out:
            process = subprocess.Popen(  # noqa: S603 - our own command lines
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=cwd,
                start_new_session=True,
                env=None if env is None else {**os.environ, **env},
            )
        self._children[process.pid] = process
        state.processes[name] = _Process(
            pid=process.pid, command=command, log=str(log), started=_start_time(process.pid) or 0
        )
        state.save(self.state_file)

    def _alive(self, state: StackState, name: str) -> bool:
        process = state.processes.get(name)
        if process is None or not _running(process.pid):
            return False
        return _start_time(process.pid) == process.started

    def _wait_log(self, state: StackState, name: str, marker: str) -> None:
        process = state.processes[name]
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if marker in Path(process.log).read_text(encoding="utf-8", errors="replace"):
                return
            self._check_started(state, name)
            time.sleep(0.2)
        raise StackError(f"{name} did not start within {START_TIMEOUT_S:.0f} s" + _tail(process))

    def _wait_port(self, state: StackState, name: str, port: int) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            self._check_started(state, name)
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                return
            time.sleep(0.2)
        raise StackError(f"{name} is not listening on port {port}" + _tail(state.processes[name]))

    def _wait_http(self, state: StackState, name: str, url: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            self._check_started(state, name)
            try:
                if httpx.get(url, timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise StackError(f"{name} not ready at {url}" + _tail(state.processes[name]))

    def _check_started(self, state: StackState, name: str) -> None:
        if not self._alive(state, name):
            raise StackError(f"{name} exited while starting" + _tail(state.processes[name]))


def _write_secret(path: Path, value: str) -> Path:
    """Write a secret file readable by its owner only."""
    path.write_text(value, encoding="utf-8")
    path.chmod(0o600)
    return path


def role_arn(dag: str) -> str:
    """The IAM role the stack creates for a demo DAG."""
    return f"arn:aws:iam::{AWS_ACCOUNT}:role/cyphergate-{dag}"


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours has exited
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat: when the process started, in clock ticks since boot."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[19])


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _tail(process: _Process) -> str:
    try:
        lines = Path(process.log).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    return "\n--- last lines of " + process.log + " ---\n" + "\n".join(lines[-25:])
