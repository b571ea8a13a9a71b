"""Builds the driver test clients into the cache, idempotently.

The clients are small programs in ``tests/drivers/`` of a checkout, one per official Neo4j
driver, that run a scenario of steps read as JSON on standard input (``tests/drivers/README.md``):

* JavaScript: ``npm ci`` from the committed lockfile, with ``neo4j-driver``;
* Go: ``go build`` against ``github.com/neo4j/neo4j-go-driver/v5``, pinned by ``go.sum``;
* Java: ``neo4j-java-driver`` resolved with Maven ``dependency:copy-dependencies``, the client
  compiled with ``javac``;
* and Neo4j's own ``cypher-shell``, resolved from Maven Central the same way.

Each is built into a folder named by a digest of its source files, so an edited client is built
anew and an unchanged one is only checked. Go's module and build caches and Maven's local
repository, and npm's download cache, live under the cache too, never in ``~/go``, ``~/.m2``
or ``~/.npm``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from proxy.devstack.install import (
    InstallError,
    Progress,
    building,
    require_tools,
    run_tool,
    to_stderr,
)

# Where a checkout keeps the clients' sources; an installed package has none.
DRIVER_SOURCES = Path(__file__).resolve().parents[2] / "tests" / "drivers"
LANGUAGES = ("js", "go", "java")
# Startup is most of a short client run: no JIT tiers beyond the first, a small heap.
JAVA = ("java", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Xmx256m")

Build = Callable[[Path, Path], None]  # (work folder holding the sources, shared tool caches)


@dataclass(frozen=True, slots=True)
class DriverClients:
    """Where the built clients are, and the command lines that run them."""

    # Each a folder of the cache, named by the digest of the client's sources, holding:
    js: Path  # scenario.mjs and its node_modules/
    go: Path  # the scenario binary
    java: Path  # classes/ and lib/
    cypher_shell: Path  # lib/

    def command(self, language: str) -> list[str]:
        """The command that runs ``language``'s client (``js``, ``go`` or ``java``); it reads
        the scenario on standard input, and takes ``--check`` to validate it only."""
        if language == "js":
            return ["node", str(self.js / "scenario.mjs")]
        if language == "go":
            return [str(self.go / "scenario")]
        if language == "java":
            classpath = f"{self.java / 'classes'}{os.pathsep}{self.java / 'lib'}/*"
            return [*JAVA, "-cp", classpath, "Scenario"]
        raise ValueError(f"language must be one of {LANGUAGES}, not {language!r}")

    def cypher_shell_command(self) -> list[str]:
        """``cypher-shell``, followed by its own options (``-a``, ``-u``, ``--format`` …)."""
        return [*JAVA, "-cp", f"{self.cypher_shell / 'lib'}/*", "org.neo4j.shell.Main"]


def ensure_driver_clients(
    cache: Path, progress: Progress = to_stderr, *, sources: Path = DRIVER_SOURCES
) -> DriverClients:
    """Build (or find in the cache) every driver client and cypher-shell."""
    if not sources.is_dir():
        raise InstallError(f"the driver clients are built from a checkout; no {sources}")

    def ensure(name: str, label: str, build: Build) -> Path:
        return _ensure(cache / "drivers", sources / name, _SOURCES[name], build, progress, label)

    return DriverClients(
        js=ensure("js", "the JavaScript driver client (npm ci)", _npm_ci),
        go=ensure("go", "the Go driver client (go build)", _go_build),
        java=ensure("java", "the Java driver client (Maven, javac)", _javac),
        cypher_shell=ensure("cypher-shell", "cypher-shell (Maven)", _copy_dependencies),
    )


# The files each client is built from: a digest of them names its folder in the cache. Old
# folders stay: checkouts of other branches may share the cache and still want theirs.
_SOURCES = {
    "js": ("package.json", "package-lock.json", "scenario.mjs"),
    "go": ("go.mod", "go.sum", "main.go"),
    "java": ("pom.xml", "Scenario.java"),
    "cypher-shell": ("pom.xml",),
}


def _ensure(
    root: Path,
    source: Path,
    names: tuple[str, ...],
    build: Build,
    progress: Progress,
    label: str,
) -> Path:
    """``root/<client>/<digest of its sources>``, built from a copy of those sources if missing."""
    digest = hashlib.sha256()
    for name in names:
        digest.update(name.encode() + b"\0" + (source / name).read_bytes() + b"\0")
    target = root / source.name / digest.hexdigest()[:16]
    with building(target, progress, label) as work:
        if work is not None:
            for name in names:
                shutil.copyfile(source / name, work / name)
            build(work, root / "tools")
    return target


def _npm_ci(work: Path, tools: Path) -> None:
    require_tools("node", "npm")
    run_tool(
        ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        "installing the JavaScript driver with npm ci",
        env={**os.environ, "npm_config_cache": str(tools / "npm")},
        cwd=work,
    )


def _go_build(work: Path, tools: Path) -> None:
    require_tools("go")
    env = {
        **os.environ,
        "GOPATH": str(tools / "go"),
        "GOMODCACHE": str(tools / "go" / "pkg" / "mod"),
        "GOCACHE": str(tools / "go-build"),
        # Writable module files, so that the cache can be deleted like any folder.
        "GOFLAGS": "-modcacherw -mod=readonly",
        "GOTOOLCHAIN": "local",
        "CGO_ENABLED": "0",
    }
    run_tool(
        ["go", "build", "-trimpath", "-o", str(work / "scenario"), "."],
        "building the Go driver client with go build",
        env=env,
        cwd=work,
    )


def _copy_dependencies(work: Path, tools: Path) -> None:
    require_tools("mvn", "java")
    run_tool(
        [
            "mvn",
            "-q",
            "-B",
            f"-Dmaven.repo.local={tools / 'm2'}",
            "-f",
            str(work / "pom.xml"),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={work / 'lib'}",
        ],
        f"resolving {work / 'pom.xml'} with Maven",
    )


def _javac(work: Path, tools: Path) -> None:
    _copy_dependencies(work, tools)
    require_tools("javac")
    run_tool(
        [
            "javac",
            "--release",
            "17",
            "-encoding",
            "UTF-8",
            "-cp",
            f"{work / 'lib'}/*",
            "-d",
            str(work / "classes"),
            str(work / "Scenario.java"),
        ],
        "compiling the Java driver client",
    )
