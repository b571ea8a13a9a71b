"""Run the driver test clients (README.md beside this file) from tests, and read their outcomes.

``run_client(language, uri, auth, steps)`` builds the clients once per process (a check of the
cache after the first time) and returns each step's outcome. ``plain`` turns what the Python
driver returns into the same JSON shape, so that a test can compare the two.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
from collections.abc import Mapping, Sequence
from typing import Any, Literal, NotRequired, TypedDict, cast

import neo4j.graph
import neo4j.spatial
import neo4j.time

from proxy.devstack.drivers import LANGUAGES, DriverClients, ensure_driver_clients
from proxy.devstack.install import default_cache_dir

__all__ = [
    "LANGUAGES",
    "Auth",
    "ClientFailed",
    "Outcome",
    "basic",
    "bearer",
    "driver_clients",
    "plain",
    "run_client",
    "run_cypher_shell",
]

# A cold JVM, a routing table and the drivers' own 5 s of retries fit well inside this.
TIMEOUT_S = 120.0


class BasicAuth(TypedDict):
    scheme: Literal["basic"]
    user: str
    password: str


class BearerAuth(TypedDict):
    scheme: Literal["bearer"]
    token: str


Auth = BasicAuth | BearerAuth


class Outcome(TypedDict):
    """One step's outcome, as every client prints it."""

    step: str
    name: str
    ok: bool
    rows: list[Any]
    error_code: str | None
    checked: NotRequired[bool]
    gql_status: NotRequired[str | None]
    error: NotRequired[str]
    bookmarks: NotRequired[list[str]]
    token_calls: NotRequired[int]
    security_codes: NotRequired[list[str]]


class ClientFailed(AssertionError):
    """A client exited with an error of its own (malformed input, a crash), not a step's."""

    def __init__(self, language: str, completed: subprocess.CompletedProcess[str]) -> None:
        super().__init__(
            f"the {language} client exited {completed.returncode}:\n"
            f"{completed.stderr.strip()}\n{completed.stdout.strip()}"
        )
        self.returncode = completed.returncode
        self.stderr = completed.stderr


def basic(user: str, password: str) -> BasicAuth:
    return {"scheme": "basic", "user": user, "password": password}


def bearer(token: str) -> BearerAuth:
    return {"scheme": "bearer", "token": token}


@functools.cache
def driver_clients() -> DriverClients:
    """The built clients; the first call in a process builds what the cache lacks."""
    return ensure_driver_clients(default_cache_dir())


def run_client(
    language: str,
    uri: str,
    auth: Auth,
    steps: Sequence[Mapping[str, Any]],
    *,
    database: str = "neo4j",
    check: bool = False,
) -> list[Outcome]:
    """Each step's outcome from ``language``'s client (``js``, ``go`` or ``java``).

    ``check`` only validates the steps. Raises :class:`ClientFailed` if the client itself
    fails; a step the server refuses is an outcome with ``ok`` false and its ``error_code``.
    """
    document = {"uri": uri, "auth": auth, "database": database, "steps": list(steps)}
    return cast(list[Outcome], run_raw(language, json.dumps(document), check=check)["results"])


def run_raw(language: str, stdin: str, *, check: bool = False) -> dict[str, Any]:
    """The whole document a client prints for ``stdin`` (``driver`` and ``results``)."""
    command = driver_clients().command(language) + (["--check"] if check else [])
    completed = subprocess.run(
        command, input=stdin, capture_output=True, text=True, timeout=TIMEOUT_S, check=False
    )
    if completed.returncode != 0:
        raise ClientFailed(language, completed)
    return cast(dict[str, Any], json.loads(completed.stdout))


def run_cypher_shell(
    uri: str, user: str, password: str, statement: str, *, database: str = "neo4j"
) -> subprocess.CompletedProcess[str]:
    """Neo4j's cypher-shell running ``statement`` with ``--format plain``; the password goes
    through the environment, not the command line."""
    command = [
        *driver_clients().cypher_shell_command(),
        *("-a", uri, "-u", user, "-d", database, "--format", "plain", "--non-interactive"),
        statement,
    ]
    return subprocess.run(
        command,
        env={**os.environ, "NEO4J_PASSWORD": password},
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )


def plain(value: Any) -> Any:
    """A Python driver value in the clients' JSON shape (README.md, "Output")."""
    if isinstance(value, neo4j.graph.Node):
        return {"labels": sorted(value.labels), "properties": plain(dict(value))}
    if isinstance(value, neo4j.graph.Relationship):
        return {"type": value.type, "properties": plain(dict(value))}
    if isinstance(value, neo4j.graph.Path):
        return {
            "nodes": [plain(node) for node in value.nodes],
            "relationships": [plain(relationship) for relationship in value.relationships],
        }
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, bytes | bytearray):
        return list(value)
    if isinstance(value, neo4j.time.Date):
        return value.iso_format()
    if isinstance(value, neo4j.spatial.Point | neo4j.time.DateTime | neo4j.time.Duration):
        return str(value)
    return value
