"""requirements.lock, the runtime pins the image and CI install with --require-hashes, agrees
with pyproject.toml: a dependency added or tightened there without refreshing the lock fails
here, not in a Docker build nobody runs locally."""

from __future__ import annotations

import re
import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import REPO

REFRESH = (
    "uv pip compile pyproject.toml --generate-hashes --python-version 3.11 --universal"
    " -o requirements.lock"
)


def pins() -> dict[str, tuple[str, list[str]]]:
    """Each locked package: its version and its hashes."""
    text = (REPO / "requirements.lock").read_text(encoding="utf-8")
    found: dict[str, tuple[str, list[str]]] = {}
    for entry in re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[2]):
        match = re.match(r"([A-Za-z0-9._-]+)==([^ ;\\\n]+)", entry)
        assert match is not None, entry
        found[canonicalize_name(match[1])] = (
            match[2],
            re.findall(r"--hash=sha256:(\w{64})", entry),
        )
    return found


def test_every_runtime_dependency_is_locked_with_hashes() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    locked = pins()
    assert len(locked) > len(project["dependencies"])  # the whole closure, not the top level
    for line in project["dependencies"]:
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{name} is not in requirements.lock: refresh it ({REFRESH})"
        version, _ = locked[name]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"{name}=={version} in requirements.lock does not satisfy {line!r}: refresh it"
        )
    assert all(hashes for _, hashes in locked.values())


def test_the_lock_names_its_refresh_command_as_the_readme_does() -> None:
    header = (REPO / "requirements.lock").read_text(encoding="utf-8").splitlines()[1]
    assert header.strip("# ") == REFRESH
    assert REFRESH in (REPO / "README.md").read_text(encoding="utf-8")
    assert "--require-hashes" in (REPO / "Dockerfile").read_text(encoding="utf-8")
    assert "--require-hashes" in (REPO / ".ci" / "bootstrap").read_text(encoding="utf-8")
