"""The import rules of the README's "Layout", checked by reading every module of ``proxy/``.

Each wing has a layer; a module may import its own wing and the wings of lower layers, never a
wing of its own layer or of a higher one. Only the command line and the devstack itself import
the devstack. No two modules import each other, directly or round a longer loop. Imports inside
``if TYPE_CHECKING:`` count like any other: a type is a dependency too.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

PROXY = Path(__file__).resolve().parent.parent / "proxy"

# Lowest first. A wing is a top-level module or package of proxy/.
LAYERS: list[set[str]] = [
    # A bounded map the caches of the foundation and the analysis share.
    {"lru"},
    # How a wrong configuration is told (settings/ raises it; it knows no setting).
    {"settings_errors"},
    # The foundation: words and tools every wing may use.
    {
        "clock",
        "ids",
        "decision_cache",
        "epoch",
        "errors",
        "faults",
        "lineage",
        "locks",
        "logs",
        "metrics",
        "ports",
        "settings",
        "statement",
        "tls",
        "wire",
    },
    # Traces: the seam the request path and the doors trace through (it reads its settings).
    {"tracing"},
    # The Bolt codec (PackStream, wire values) speaks only the foundation's words.
    {"principal", "codec", "chains"},
    # Values as the Query API writes them, from the driver's or straight from the codec's.
    {"values"},
    # Policy bundles (built, named, checked), and the folder served as one, below the OPA server.
    {"bundles"},
    {"bundle_server"},
    # The wings: each a sink behind the Protocol its user needs.
    {"audit", "auth", "neo4j", "opa_answers", "opa_server", "plan"},
    # What reads the audit log beside the request path: the SIEM sinks.
    {"analysis", "siem"},
    {"policy"},
    # OpenLineage run events: a sink of the statements the gateway ended ([lineage]).
    {"lineage_events"},
    # The use cases, and the caller's side.
    {"gateway", "client"},
    # The front doors, and the Airflow provider.
    {"api", "airflow", "bolt"},
    # The composition root, and the processes that serve what it composes.
    {"app"},
    {"workers"},
    # The local stack, then the command line.
    {"devstack"},
    {"cli"},
    {"__main__"},
]
LAYER = {wing: rank for rank, wings in enumerate(LAYERS) for wing in wings}
MAY_IMPORT_DEVSTACK = {"cli", "devstack"}


def modules() -> Iterator[tuple[str, Path]]:
    """``proxy.x.y`` and its file, for every module of the package."""
    for path in sorted(PROXY.rglob("*.py")):
        parts = path.relative_to(PROXY.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(parts), path


def imports(name: str, path: Path) -> set[str]:
    """The ``proxy`` modules ``name`` imports (``from proxy.a import b`` counts ``proxy.a.b`` if
    that is a module, else ``proxy.a``)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    known = {module for module, _ in modules()}
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return {module for module in found if module == "proxy" or module.startswith("proxy.")}


def wing(module: str) -> str:
    return module.split(".")[1] if "." in module else module


GRAPH = {name: imports(name, path) for name, path in modules()}


def test_every_wing_has_a_layer() -> None:
    wings = {wing(name) for name in GRAPH if name != "proxy"}
    assert wings <= set(LAYER), f"put {sorted(wings - set(LAYER))} in a layer of LAYERS"


def test_no_import_runs_up_or_sideways() -> None:
    wrong = [
        f"{importer} imports {imported}"
        for importer, targets in GRAPH.items()
        for imported in targets
        if wing(imported) != wing(importer)
        and importer != "proxy"
        and imported != "proxy"
        and LAYER[wing(imported)] >= LAYER[wing(importer)]
    ]
    assert not wrong, "\n".join(wrong)


def test_only_the_command_line_and_the_devstack_import_the_devstack() -> None:
    wrong = [
        f"{importer} imports {imported}"
        for importer, targets in GRAPH.items()
        for imported in targets
        if wing(imported) == "devstack" and wing(importer) not in MAY_IMPORT_DEVSTACK
    ]
    assert not wrong, "\n".join(wrong)


def test_no_import_cycle() -> None:
    try:
        tuple(TopologicalSorter(GRAPH).static_order())
    except CycleError as error:
        pytest.fail(f"import cycle: {' -> '.join(error.args[1])}")


def test_the_rules_see_the_imports_they_judge() -> None:
    """The walk finds relative, aliased and function-level imports alike."""
    assert "proxy.neo4j.logins" in GRAPH["proxy.gateway.seams"]
    assert "proxy.app" in GRAPH["proxy.cli"]  # imported inside a function
    assert "proxy.devstack.stack" in GRAPH["proxy.cli"]


def test_no_module_is_a_big_room() -> None:
    """A module past 450 lines is asking to be split (STYLE: one module per concern)."""
    big = {
        name: lines
        for name, path in modules()
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > 450
    }
    assert not big, big
