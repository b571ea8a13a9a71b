"""The one settings object, read once at the edge (``cyphergate serve``) and passed down.

Sources, highest priority first: ``CYPHERGATE_*`` environment variables (nested sections
separated by ``__``, e.g. ``CYPHERGATE_OPA__URL``), then the TOML configuration file. Each
section lives in a module of its own here; every name is importable from ``proxy.settings``.
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, Field, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from proxy.settings.access import (
    AuthSettings,
    BindingSettings,
    IAMSettings,
    OIDCIssuerSettings,
    OPASettings,
)
from proxy.settings.audit import ArchiveSettings, AuditSettings, AuditWebSettings, SinkSettings
from proxy.settings.base import ASYMMETRIC_ALGORITHMS, IPNetwork, refuse_placeholder_password
from proxy.settings.lineage import LineageSettings
from proxy.settings.neo4j import Neo4jSettings, SecretSettings
from proxy.settings.server import (
    AdmissionSettings,
    HTTPSettings,
    RateLimitSettings,
    RateSettings,
    ServerSettings,
)
from proxy.settings.telemetry import TelemetrySettings
from proxy.settings_errors import ConfigurationError, validation_problems

__all__ = [
    "ASYMMETRIC_ALGORITHMS",
    "AdmissionSettings",
    "ArchiveSettings",
    "AuditSettings",
    "AuditWebSettings",
    "AuthSettings",
    "BindingSettings",
    "HTTPSettings",
    "IAMSettings",
    "IPNetwork",
    "LineageSettings",
    "Neo4jSettings",
    "OIDCIssuerSettings",
    "OPASettings",
    "RateLimitSettings",
    "RateSettings",
    "SecretSettings",
    "ServerSettings",
    "Settings",
    "SinkSettings",
    "TelemetrySettings",
    "load_settings",
    "refuse_placeholder_password",
]


class Settings(BaseSettings):
    """Everything the gateway needs; nothing is read from the environment elsewhere.

    Unknown sections and keys are refused, ``faults`` among them: crash injection is an object
    the crash tests pass to ``create_app`` (see :mod:`proxy.faults`), never a configuration.
    """

    model_config = SettingsConfigDict(
        env_prefix="CYPHERGATE_", env_nested_delimiter="__", extra="forbid"
    )

    profile: Literal["production", "development"] = Field(
        default="production", description="development allows credentials in the environment."
    )
    server: ServerSettings = Field(default_factory=ServerSettings)
    neo4j: Neo4jSettings
    opa: OPASettings = Field(default_factory=OPASettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    telemetry: TelemetrySettings = Field(default_factory=TelemetrySettings)
    lineage: LineageSettings = Field(default_factory=LineageSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],  # noqa: ARG003 - pydantic-settings' signature
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,  # noqa: ARG003
        file_secret_settings: PydanticBaseSettingsSource,  # noqa: ARG003
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The configuration file arrives as init arguments; the environment overrides it.
        return (env_settings, init_settings)


def load_settings(config: Path | None = None) -> Settings:
    """Build the settings from an optional TOML file and the environment; fail fast if wrong.

    Raises :class:`ConfigurationError`, whose message names each wrong key and never a value.
    """
    values: dict[str, Any] = {}
    if config is not None:
        try:
            with config.open("rb") as handle:
                values = tomllib.load(handle)
        except OSError as exc:
            raise ConfigurationError(config, [f"cannot read it: {exc.strerror or exc}"]) from None
        except tomllib.TOMLDecodeError as exc:
            # tomllib names the line and column, never the text found there.
            raise ConfigurationError(config, [f"not valid TOML: {exc}"]) from None
    misspelt = _misspelt_variables()
    if misspelt:
        raise ConfigurationError(config, misspelt)
    try:
        return Settings(**values)
    except ValidationError as exc:
        raise ConfigurationError(config, validation_problems(exc)) from None
    except SettingsError as exc:  # an environment variable that is not valid JSON
        raise ConfigurationError(config, _unparsed_variables(exc)) from None


def _misspelt_variables() -> list[str]:
    """``CYPHERGATE_`` variables meant as settings that pydantic-settings would pass over in
    silence: a section's key with one underscore (``CYPHERGATE_AUDIT_PATH``, the log then
    written to the default path) or a section that does not exist. Others of the prefix (the
    Airflow provider's, the build's) name no section and are left alone."""
    sections = Settings.model_fields
    problems = []
    for name in sorted(os.environ):
        if not name.upper().startswith("CYPHERGATE_"):
            continue
        rest = name[len("CYPHERGATE_") :].lower()
        first, nested, _ = rest.partition("__")
        if nested and first not in sections:
            problems.append(f"{name}: not a setting (there is no section {first!r})")
        elif not nested and rest not in sections:
            section = next((s for s in sections if rest.startswith(f"{s}_")), None)
            if section is not None:
                key = rest.removeprefix(f"{section}_").upper()
                problems.append(
                    f"{name}: not a setting (a key of a section takes two underscores:"
                    f" CYPHERGATE_{section.upper()}__{key})"
                )
    return problems


def _unparsed_variables(error: SettingsError) -> list[str]:
    """The variables behind ``error`` (pydantic-settings names only the top-level section):
    those setting a list or table whose value is not JSON. Never a value: it may be a secret."""
    problems = [
        f"{name}: not valid JSON (a list or table set in the environment is JSON, such as"
        ' ["10.0.0.0/8"] or {"requests": 10})'
        for name, value in sorted(os.environ.items())
        if _sets_a_structure(name) and not _json(value)
    ]
    return problems or [str(error)]


def _sets_a_structure(variable: str) -> bool:
    """Whether ``variable`` (``CYPHERGATE_A__B``) sets a list, table or section, which
    pydantic-settings reads as JSON."""
    if not variable.upper().startswith("CYPHERGATE_"):
        return False
    model: type[BaseModel] = Settings
    *sections, last = variable[len("CYPHERGATE_") :].lower().split("__")
    for name in sections:
        field = model.model_fields.get(name)
        found = [a for a in _alternatives(field.annotation) if _is_model(a)] if field else []
        if not found:
            return False
        model = found[0]
    field = model.model_fields.get(last)
    return field is not None and any(
        _is_model(a) or get_origin(a) in (list, dict) for a in _alternatives(field.annotation)
    )


def _alternatives(annotation: Any) -> tuple[Any, ...]:
    return get_args(annotation) if get_origin(annotation) in (Union, UnionType) else (annotation,)


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True
