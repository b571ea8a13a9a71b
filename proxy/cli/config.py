"""``cyphergate config check``: is a configuration file right, before anything starts?

The settings are validated as ``serve`` would (unknown keys, types, placeholder passwords), then
every file the configuration names is opened: a key, certificate or secret file must be a
readable file, the audit keys must load; a file the gateway writes (the audit log, the leases)
must have a writable folder. Nothing is contacted and nothing is created; ``serve`` makes the same
checks before it starts. Every field typed ``Path`` is checked, so a new one is covered without
being listed here; only the files the gateway *writes* are listed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel

from proxy.audit.checkpoint import NotAKey, ParameterDigester, load_private_key
from proxy.locks import owned_files
from proxy.settings import Settings, load_settings
from proxy.settings_errors import ConfigurationError
from proxy.tls import check_pair

# Files the gateway creates or appends to; every other path must already be there.
WRITTEN = frozenset({"audit.path", "neo4j.leases_path", "lineage.path"})
# ... and the JSON Lines files of the SIEM sinks.
_WRITTEN_SINK = re.compile(r"audit\.sinks\[[0-9]+\]\.path")
# Files whose writer makes their folder when it is missing (the leases' does not).
_FOLDER_MADE = re.compile(r"audit\.path|audit\.sinks\[[0-9]+\]\.path")


def check_config(config: Path) -> tuple[Settings, list[str]]:
    """The settings of ``config`` and the problems of the files it names (empty: all good).

    Raises :class:`~proxy.settings_errors.ConfigurationError` if the file itself is wrong.
    """
    settings = load_settings(config)
    return settings, file_problems(settings)


def file_problems(settings: Settings, *, folders_made: bool = False) -> list[str]:
    """One line per file ``settings`` names that the gateway could not use, naming its key
    (``config check`` prints them; ``serve`` refuses to start on them, and with
    ``folders_made`` takes a missing folder that the file's writer makes and can)."""
    problems: list[str] = []
    owners: dict[Path, str] = {}  # each file written, and the key that writes it
    for name, path in named_paths(settings):
        if name == "neo4j.leases_path" and settings.neo4j.credentials != "leases":
            continue  # a default never opened (the working folder need not be writable)
        written = name in WRITTEN or _WRITTEN_SINK.fullmatch(name) is not None
        made = folders_made and _FOLDER_MADE.fullmatch(name) is not None
        problem = _written_problem(path, folder_made=made) if written else _read_problem(path)
        if problem is None and written and str(path) != ":memory:":
            problem = _shared(name, path, owners)
        if problem is not None:
            problems.append(f"{name} = {str(path)!r}: {problem}")
    if problems:
        return problems
    # The files are there: do the keys load, as serve will load them?
    server, audit = settings.server, settings.audit
    pairs = {
        "server.tls_certificate and tls_key": (server.tls_certificate, server.tls_key),
        "server.bolt_tls_certificate and bolt_tls_key": (
            server.bolt_tls_certificate,
            server.bolt_tls_key,
        ),
    }
    for setting, (certificate, key) in pairs.items():
        try:
            check_pair(certificate, key, setting=setting)
        except ConfigurationError as error:
            problems += error.problems
    if audit.signing_key_file is not None:
        try:
            load_private_key(audit.signing_key_file)
        except NotAKey:  # its words name the file, never what it holds
            problems.append(
                f"audit.signing_key_file = {str(audit.signing_key_file)!r}: not an unencrypted"
                " Ed25519 private key (PEM, PKCS#8)"
            )
    if audit.hmac_key_file is not None:
        try:
            ParameterDigester.from_file(audit.hmac_key_file)
        except ValueError:
            problems.append(
                f"audit.hmac_key_file = {str(audit.hmac_key_file)!r}: shorter than 32 bytes"
            )
    return problems


def _shared(name: str, path: Path, owners: dict[Path, str]) -> str | None:
    """Whether another key writes ``path`` (or one of an SQLite file's own files): a JSON
    Lines sink appending to the audit log would corrupt it, and two databases in one file take
    one lock, which the second refuses at start with a traceback."""
    database = name in ("audit.path", "neo4j.leases_path")
    files = owned_files(path.resolve()) if database else [path.resolve()]
    for file in files:
        if file in owners:
            return f"{owners[file]} writes it too: each file the gateway writes needs its own"
    owners.update(dict.fromkeys(files, name))
    return None


def named_paths(model: BaseModel, prefix: str = "") -> Iterator[tuple[str, Path]]:
    """``(dotted name, path)`` of every path set in ``model`` and its sections."""
    for name in type(model).model_fields:
        value = getattr(model, name)
        dotted = f"{prefix}{name}"
        yield from _paths_in(value, dotted)


def _paths_in(value: object, dotted: str) -> Iterator[tuple[str, Path]]:
    if isinstance(value, Path):
        yield dotted, value
    elif isinstance(value, BaseModel):
        yield from named_paths(value, dotted + ".")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths_in(item, f"{dotted}[{index}]")


def _read_problem(path: Path) -> str | None:
    if not path.exists():
        return "no such file"
    if not path.is_file():
        return "not a regular file"
    try:
        with path.open("rb") as handle:
            handle.read(1)
    except OSError as exc:
        return f"cannot be read ({exc.strerror or type(exc).__name__})"
    return None


def _written_problem(path: Path, *, folder_made: bool = False) -> str | None:
    if str(path) == ":memory:":
        return None
    if path.exists():
        if not path.is_file():
            return "not a regular file"
        if not os.access(path, os.R_OK | os.W_OK):
            return "not readable and writable by this user"
        return None
    folder = path.parent
    if folder_made:  # the nearest folder there is, where the missing ones would be made
        folder = next(f for f in (folder, *folder.parents) if f.exists() or f == f.parent)
    if not folder.is_dir():
        return f"its folder {str(folder)!r} " + (
            "is not a folder" if folder.exists() else "does not exist"
        )
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"its folder {str(folder)!r} is not writable by this user"
    return None
