"""Policy bundles: ``policies/`` as OPA serves it from S3 or HTTP, built, signed and named.

A bundle is what ``opa build -b`` makes of the policy folder: the Rego modules and ``data.json``
(not the JSON schemas, not the ``*_test.rego`` tests), a ``.manifest`` whose ``revision`` names
what was built, and, when signed, a ``.signatures.json`` whose JWT carries the SHA-256 of every
file. OPA verifies that signature with the public key in its configuration and refuses an
unsigned or altered bundle, keeping the previous one active. The grants in ``data.json`` are
checked against ``schemas/grants.json`` before anything is built: a misspelt key never ships.

Revisions: a release build names the Git commit of the folder (and refuses a folder with
uncommitted changes unless a revision is given); the development folder server names the
SHA-256 of the files it served (:func:`folder_revision`), so either way the revision OPA reports
for a decision says exactly which policy made it.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import jsonschema

# What OPA never loads from the policy folder: the JSON schemas (``opa check --schema``) and
# the tests (``opa test``). The same list for ``opa run`` over the folder and for a bundle.
IGNORED = ("schemas", "*_test.rego")
# Files OPA reads as data: only data.json may be one.
_DATA_SUFFIXES = (".json", ".yaml", ".yml")
# The bundle's name in OPA's configuration, its status and its decision logs.
BUNDLE_NAME = "cyphergate"
# The key OPA verifies bundle signatures with. ``opa build`` names its signing key "default" in
# the JWT's header, and a key id in the header wins over the one in OPA's configuration.
KEY_ID = "default"
# How long OPA's long poll may wait at the folder server for a change (seconds).
LONG_POLL_S = 10


class BundleError(RuntimeError):
    """The folder cannot become a bundle; the message says why, without secrets."""


def policy_files(policies: Path) -> list[Path]:
    """The files of ``policies`` OPA loads, in a stable order (hidden files and folders, the
    schemas and the tests left out)."""
    found: list[Path] = []
    for directory, folders, files in os.walk(policies):
        folders[:] = sorted(f for f in folders if not _ignored(f))
        found += [Path(directory, name) for name in sorted(files) if not _ignored(name)]
    return found


def _ignored(name: str) -> bool:
    return name.startswith(".") or any(fnmatch.fnmatch(name, pattern) for pattern in IGNORED)


def folder_revision(policies: Path) -> str:
    """The first 16 hex digits of SHA-256 over the path and bytes of every file OPA loads.

    Each path and content is length-prefixed, so no two folders hash alike by moving bytes
    between a name and a file.
    """
    digest = hashlib.sha256()
    for path in policy_files(policies):
        name = path.relative_to(policies).as_posix().encode()
        content = path.read_bytes()
        digest.update(len(name).to_bytes(8, "big") + name)
        digest.update(len(content).to_bytes(8, "big") + content)
    return digest.hexdigest()[:16]


def snapshot(policies: Path, target: Path) -> None:
    """Copy what a bundle is built from (the files OPA loads, and ``schemas/`` for the grants'
    check) into ``target``, so the revision and the bundle are computed from the same bytes
    even while someone edits the folder. A file that links out of the folder is refused
    (:class:`BundleError`): Git holds only the path it names, not what the building machine
    has there."""
    root = policies.resolve()
    for path in [*policy_files(policies), *sorted((policies / "schemas").glob("*.json"))]:
        if not path.resolve().is_relative_to(root):
            where = path.relative_to(policies).as_posix()
            raise BundleError(f"{where} links out of {policies}; a policy file must be in it")
        copy = target / path.relative_to(policies)
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, copy)


def folder_fingerprint(policies: Path) -> tuple[tuple[str, int, int], ...]:
    """Name, size and modification time of every loaded file: cheap to read, and it changes
    whenever an edit does (the revision is computed only then)."""
    fingerprint = []
    for path in policy_files(policies):
        stat = path.stat()
        fingerprint.append((str(path), stat.st_size, stat.st_mtime_ns))
    return tuple(fingerprint)


def git_revision(policies: Path) -> str:
    """The commit the folder is at; a folder with uncommitted changes has none, nor one with a
    file Git ignores (``git status`` is silent about it) that the bundle would carry."""
    try:
        commit = _git(policies, "rev-parse", "HEAD")
        changes = _git(policies, "status", "--porcelain", "--untracked-files=all", "--", ".")
        ignored = _git(policies, "ls-files", "-z", "--others", "--ignored", "--exclude-standard")
    except (OSError, subprocess.CalledProcessError) as exc:
        raise BundleError(f"{policies} is not in a Git checkout; pass --revision") from exc
    loaded = {path.relative_to(policies).as_posix() for path in policy_files(policies)}
    if shipped := sorted(loaded & set(ignored.split("\0"))):
        changes = f"{changes}\nignored by Git: {', '.join(shipped)}".strip()
    if changes:
        raise BundleError(
            f"{policies} has uncommitted changes, so no commit names it: commit them, "
            f"or pass --revision\n{changes}"
        )
    return commit


def _git(folder: Path, *arguments: str) -> str:
    completed = subprocess.run(  # noqa: S603 - fixed program, arguments we built
        ["git", "-C", str(folder), *arguments],  # noqa: S607 - git from PATH, as a developer's
        capture_output=True,
        text=True,
        check=True,
    )
    return completed.stdout.strip()


def validate_grants(policies: Path) -> None:
    """Check ``data.json`` against ``schemas/grants.json``; :class:`BundleError` names the
    first place that is wrong. It must be the only data: ``opa build`` merges any folder's
    ``data.json`` (or ``.yaml``) into the data, and OPA over a folder every JSON or YAML file,
    where no schema would check it."""
    for path in policy_files(policies):
        name = path.relative_to(policies).as_posix()
        if path.suffix.lower() in _DATA_SUFFIXES and name != "data.json":
            raise BundleError(f"{name}: only data.json holds data (it is checked); move it there")
    try:
        data = json.loads((policies / "data.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BundleError(f"cannot read the grants or their schema: {exc}") from exc
    _check_grants(policies, data, "data.json")


def _check_grants(policies: Path, data: object, what: str) -> None:
    try:
        schema = json.loads((policies / "schemas" / "grants.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BundleError(f"cannot read the grants or their schema: {exc}") from exc
    error = jsonschema.exceptions.best_match(
        jsonschema.Draft202012Validator(schema).iter_errors(data)
    )
    if error is not None:
        where = "/".join(str(part) for part in error.absolute_path) or "(top)"
        raise BundleError(f"{what} does not match schemas/grants.json at {where}: {error.message}")


def _check_served_grants(opa: Path, policies: Path, bundle: Path) -> None:
    """The grants as the built bundle serves them (a Rego module may add to them, its package
    being their path) checked too."""
    query = '{"cyphergate": {k: data.cyphergate[k] | some k in ["grants", "reviewers"]}}'
    completed = subprocess.run(  # noqa: S603 - the operator's opa, arguments we built
        [str(opa), "eval", "--format", "json", "--bundle", str(bundle), query],
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        served = json.loads(completed.stdout)["result"][0]["expressions"][0]["value"]
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        tail = "\n".join((completed.stdout + completed.stderr).strip().splitlines()[-20:])
        raise BundleError(f"opa could not read the built grants of {policies}:\n{tail}") from exc
    _check_grants(policies, served, "the grants the bundle serves")


def build_bundle(
    opa: Path,
    policies: Path,
    output: Path,
    *,
    revision: str,
    signing_key: Path | None = None,
    signing_alg: str = "RS256",
) -> None:
    """Validate the grants, then ``opa build -b`` the folder into ``output`` (a ``.tar.gz``),
    with ``revision`` in its manifest and, given a private key, signed. ``output`` appears
    whole or not at all. The build reads a snapshot (:func:`snapshot`) from inside it, so the
    bundle holds what :func:`policy_files` lists, under paths relative to the folder."""
    validate_grants(policies)
    if output.exists() and not output.is_file():  # renamed over, as root even a device would go
        raise BundleError(f"{output} is not a regular file (a folder, a pipe, a device)")
    output = output.resolve()  # opa runs inside the snapshot
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=output.parent) as work:
        copy, built = Path(work) / "policies", Path(work) / "bundle.tar.gz"
        snapshot(policies, copy)
        command = [str(opa), "build", "--bundle", ".", "--revision", revision]
        for pattern in IGNORED:
            command += ["--ignore", pattern]
        if signing_key is not None:
            command += ["--signing-key", str(signing_key.resolve()), "--signing-alg", signing_alg]
        command += ["--output", str(built)]
        completed = subprocess.run(  # noqa: S603 - the operator's opa, arguments we built
            command, cwd=copy, capture_output=True, text=True, check=False
        )
        if completed.returncode != 0:
            tail = "\n".join((completed.stdout + completed.stderr).strip().splitlines()[-20:])
            raise BundleError(f"opa build refused {policies}:\n{tail}")
        _check_served_grants(opa, copy, built)
        built.replace(output)


def opa_bundle_config(
    *,
    service_url: str,
    resource: str,
    s3: bool = False,
    public_key: str | None = None,
    signing_alg: str = "RS256",
    min_delay_s: int = 1,
    max_delay_s: int = 2,
    long_poll_s: int | None = None,
) -> dict[str, Any]:
    """OPA's configuration to serve the gateway's policy from one bundle, logging decisions.

    ``s3`` signs requests with the AWS credentials in OPA's environment
    (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``). With ``public_key`` (a
    PEM) OPA refuses any bundle not signed by its private key. ``long_poll_s`` asks a server
    that supports it (the folder server does) to answer as soon as the bundle changes.
    """
    service: dict[str, Any] = {"url": service_url}
    if s3:
        service["credentials"] = {"s3_signing": {"environment_credentials": {}}}
    polling: dict[str, Any] = {"min_delay_seconds": min_delay_s, "max_delay_seconds": max_delay_s}
    if long_poll_s is not None:
        polling["long_polling_timeout_seconds"] = long_poll_s
    bundle: dict[str, Any] = {"service": "policy", "resource": resource, "polling": polling}
    config: dict[str, Any] = {
        "services": {"policy": service},
        "bundles": {BUNDLE_NAME: bundle},
        # Every decision on OPA's standard output, with the decision_id the audit record keeps.
        "decision_logs": {"console": True},
    }
    if public_key is not None:
        bundle["signing"] = {"keyid": KEY_ID}
        config["keys"] = {KEY_ID: {"key": public_key, "algorithm": signing_alg}}
    return config
