"""Installs the real components of the local stack into a cache, idempotently.

* Neo4j: ``org.neo4j.test:neo4j-harness`` from Maven Central, plus a small launcher compiled
  with ``javac``;
* OPA: ``go install github.com/open-policy-agent/opa@<version>``;
* the OIDC provider: the npm package ``oidc-provider`` with our small server script.

Each component is built in a temporary folder and renamed into place when complete, under a
file lock, so an interrupted or concurrent install never leaves a half-built component behind.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

# The newest 5.26 LTS release that resolved from Maven Central when this was written; it runs
# on Java 17. Change both here and in the README.
NEO4J_VERSION = "5.26.30"
OPA_VERSION = "v1.22.2"

Progress = Callable[[str], None]


def default_cache_dir() -> Path:
    """``$CYPHERGATE_CACHE``, else ``~/.cache/cyphergate``."""
    configured = os.environ.get("CYPHERGATE_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "cyphergate"


def to_stderr(message: str) -> None:
    """The default progress: one line on standard error."""
    print(message, file=sys.stderr, flush=True)


@dataclass(frozen=True, slots=True)
class Components:
    """Where the installed components are."""

    neo4j_classpath: str
    opa: Path
    oidc_dir: Path


class InstallError(RuntimeError):
    """A component could not be installed; the message says what to do."""


def install_all(cache: Path, progress: Progress = to_stderr) -> Components:
    """Install (or find in the cache) every component."""
    return Components(
        neo4j_classpath=ensure_neo4j(cache, progress),
        opa=ensure_opa(cache, progress),
        oidc_dir=ensure_oidc(cache, progress),
    )


def ensure_neo4j(cache: Path, progress: Progress = to_stderr) -> str:
    """The Java classpath of Neo4j and its launcher."""
    target = cache / "neo4j" / NEO4J_VERSION
    with building(target, progress, f"Neo4j {NEO4J_VERSION} (Maven Central)") as work:
        if work is not None:
            require_tools("mvn", "javac")
            pom = _asset("pom.xml").replace("NEO4J_VERSION", NEO4J_VERSION)
            (work / "pom.xml").write_text(pom, encoding="utf-8")
            run_tool(
                [
                    "mvn",
                    "-q",
                    "-B",
                    "-f",
                    str(work / "pom.xml"),
                    "dependency:copy-dependencies",
                    f"-DoutputDirectory={work / 'lib'}",
                ],
                "resolving neo4j-harness with Maven",
            )
            launcher = work / "Neo4jLauncher.java"
            launcher.write_text(_asset("Neo4jLauncher.java"), encoding="utf-8")
            run_tool(
                ["javac", "-cp", f"{work / 'lib'}/*", "-d", str(work / "classes"), str(launcher)],
                "compiling the Neo4j launcher",
            )
    return f"{target / 'classes'}{os.pathsep}{target / 'lib'}/*"


def ensure_opa(cache: Path, progress: Progress = to_stderr) -> Path:
    """The path of the ``opa`` binary."""
    target = cache / "opa" / OPA_VERSION
    with building(target, progress, f"OPA {OPA_VERSION} (go install)") as work:
        if work is not None:
            require_tools("go")
            env = {**os.environ, "GOBIN": str(work), "CGO_ENABLED": "0"}
            run_tool(
                ["go", "install", f"github.com/open-policy-agent/opa@{OPA_VERSION}"],
                "building OPA with go install",
                env=env,
            )
    return target / "opa"


def ensure_oidc(cache: Path, progress: Progress = to_stderr) -> Path:
    """A folder holding the provider script and its ``node_modules``."""
    names = ("package.json", "package-lock.json", "server.mjs")
    key = hashlib.sha256(b"".join(_asset(f"oidc/{name}").encode() for name in names))
    target = cache / "oidc" / key.hexdigest()[:16]
    with building(target, progress, "oidc-provider (npm)") as work:
        if work is not None:
            require_tools("node", "npm")
            for name in names:
                (work / name).write_text(_asset(f"oidc/{name}"), encoding="utf-8")
            run_tool(
                ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                "installing oidc-provider with npm",
                cwd=work,
            )
    return target


@contextmanager
def building(target: Path, progress: Progress, label: str) -> Iterator[Path | None]:
    """Yield a work folder to fill if ``target`` is missing, else None; then move it in place."""
    if target.exists():
        progress(f"{label}: installed already ({target})")
        yield None
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with (target.parent / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.exists():  # another process finished it while we waited
            progress(f"{label}: installed by another process meanwhile ({target})")
            yield None
            return
        work = target.parent / f".building-{target.name}-{os.getpid()}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        # A step can take minutes (Maven, go install): say what it is before, and how long after.
        progress(f"installing {label} into {target} (this can take minutes) ...")
        try:
            yield work
            work.rename(target)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        progress(f"installed {label} in {time.monotonic() - started:.1f} s")


def _asset(name: str) -> str:
    return resources.files("proxy.devstack").joinpath("assets", name).read_text(encoding="utf-8")


def require_tools(*tools: str) -> None:
    """Raise :class:`InstallError` naming whichever of ``tools`` is not on PATH."""
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        raise InstallError(
            f"the local stack needs {', '.join(missing)} on PATH "
            "(Java 17 with Maven, Go, Node 20 with npm)"
        )


def run_tool(
    command: list[str], what: str, *, env: dict[str, str] | None = None, cwd: Path | None = None
) -> None:
    """Run a build tool; on failure raise :class:`InstallError` with the end of its output."""
    completed = subprocess.run(  # noqa: S603 - fixed tool names, arguments we built
        command, env=env, cwd=cwd, capture_output=True, text=True, check=False
    )
    if completed.returncode != 0:
        tail = "\n".join((completed.stdout + completed.stderr).strip().splitlines()[-20:])
        raise InstallError(f"{what} failed (exit {completed.returncode}):\n{tail}")
