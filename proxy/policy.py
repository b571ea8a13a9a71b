"""Asking Open Policy Agent whether a DAG may run a statement, and who may read the audit log.

The input document is versioned and described by ``policies/schemas/input.json``. The answer
is validated strictly: anything but a well-formed decision object is treated as a failure.
Fail closed, always: an OPA error, timeout or malformed answer is :class:`PolicyUnavailable`
(503); an undefined answer is a denial (403). OPA is asked through its REST API
(``POST /v1/data/<package>/<rule>``) with an httpx client that ``proxy/app.py`` opens, so the
gateway speaks HTTP through one client stack.

Every decision names the policy revision that made it: the SHA-256 of the policy modules and
data OPA serves, re-read every ``opa.revision_interval_s`` (OPA reloads a watched folder
within a second of an edit). Decisions are cached per revision and input document (without
the task, run and try, which are context only), so a policy change empties the cache by
changing the key.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError

from proxy.analysis import Analysis
from proxy.errors import PolicyUnavailable
from proxy.metrics import Metrics
from proxy.principal import Identity, Principal
from proxy.settings import OPASettings
from proxy.statement import AccessMode, RowLimitAction

log = logging.getLogger(__name__)
# The watcher re-reads the revision at this fraction of opa.revision_interval_s after the last read.
_REREAD_AT = 0.75

INPUT_VERSION = 3
AUDIT_INPUT_VERSION = 1
# Principal fields sent to OPA as context only; a decision never depends on them (documented
# in policies/schemas/input.json), so they are not part of the decision cache's key.
_CONTEXT_ONLY = ("task", "run", "try_number")


@dataclass(frozen=True, slots=True)
class Decision:
    """The policy's verdict on one request, with the constraints the gateway enforces.

    Only a policy engine (:class:`OPAPolicyEngine`) makes these.
    """

    allow: bool
    reasons: tuple[str, ...]
    decision_id: str
    access_mode: AccessMode
    timeout_s: float | None
    # Shadow mode: the policy refused, but the DAG's grant says "record, then run anyway".
    shadow: bool = False
    row_limit: int | None = None
    row_limit_action: RowLimitAction = "error"
    revision: str | None = None

    @property
    def enforced_allow(self) -> bool:
        """Whether the statement may run: allowed, or refused in shadow mode."""
        return self.allow or self.shadow

    def as_document(self) -> dict[str, Any]:
        """The decision as it appears in the audit record."""
        document: dict[str, Any] = {
            "allow": self.enforced_allow,
            "reasons": list(self.reasons),
            "decision_id": self.decision_id,
            "policy_revision": self.revision,
        }
        if self.shadow and not self.allow:
            document["shadow_denied"] = True
        return document


@dataclass(frozen=True, slots=True)
class Preflight:
    """The policy's answer before a statement is planned: may the DAG use this database at all
    (``decision``), and may it call any procedure or user-defined function."""

    decision: Decision
    procedures: bool
    functions: bool


def preflight_input(principal: Principal, *, database: str) -> dict[str, Any]:
    """The input of the preflight question: the principal and the database, nothing planned."""
    return {
        "version": INPUT_VERSION,
        "principal": principal.as_document(),
        "request": {"database": database},
    }


def policy_input(
    principal: Principal,
    *,
    database: str,
    statement: str,
    parameter_names: list[str],
    requested_access_mode: AccessMode | None,
    analysis: Analysis,
) -> dict[str, Any]:
    """The input document OPA decides on; its shape is ``policies/schemas/input.json``."""
    return input_document(
        principal.as_document(),
        database=database,
        statement=statement,
        parameter_names=parameter_names,
        requested_access_mode=requested_access_mode,
        analysis=analysis.document,
    )


def input_document(
    principal: dict[str, Any],
    *,
    database: str,
    statement: str,
    parameter_names: Iterable[str],
    requested_access_mode: AccessMode | None,
    analysis: dict[str, Any],
) -> dict[str, Any]:
    """:func:`policy_input` from the documents an audit record keeps of the principal and the
    analysis (``policy replay`` re-decides recorded requests with it)."""
    return {
        "version": INPUT_VERSION,
        "principal": principal,
        "request": {
            "database": database,
            "statement": statement,
            "parameter_names": sorted(parameter_names),
            "access_mode": requested_access_mode,
        },
        "analysis": analysis,
    }


class _Constraints(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    access_mode: AccessMode
    timeout_ms: int | None = Field(default=None, gt=0)
    row_limit: int | None = Field(default=None, ge=0)
    row_limit_action: RowLimitAction = "error"


class _Answer(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    allow: StrictBool
    reasons: list[str] = Field(default_factory=list)
    shadow: StrictBool = False
    constraints: _Constraints


class _PreflightAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    allow: StrictBool
    reasons: list[str] = Field(default_factory=list)
    procedures: StrictBool
    functions: StrictBool


class _AccessAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    allow: StrictBool
    reasons: list[str] = Field(default_factory=list)


@dataclass(frozen=True, slots=True)
class AccessDecision:
    """Whether a caller may read the audit log, and why not."""

    allow: bool
    reasons: tuple[str, ...]


class OPAPolicyEngine:
    """Decides query requests and audit reads with an OPA server.

    ``http`` is an httpx client whose ``base_url`` is ``settings.url``; the engine neither opens
    nor closes it. No request is retried: a retry would only stretch the time before it fails
    closed.
    """

    def __init__(
        self,
        settings: OPASettings,
        http: httpx.AsyncClient,
        metrics: Metrics | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        url = urlsplit(settings.url)
        if url.scheme not in {"http", "https"} or url.hostname is None:
            raise ValueError(f"opa.url must be an http(s) URL, got {settings.url!r}")
        self._settings = settings
        self._http = http
        self._lookups = (metrics or Metrics()).cache_lookups
        self._clock = clock
        self._revision: str | None = None
        # When the fetch that last confirmed the revision began (see _fresh_revision).
        self._confirmed_at = float("-inf")
        # OPA's raw answers (policies, data) and the revision computed from them.
        self._last_answers: tuple[tuple[bytes, bytes], str] | None = None
        self._cache: OrderedDict[tuple[str | None, str], Decision] = OrderedDict()
        self._preflights: OrderedDict[tuple[str | None, str], Preflight] = OrderedDict()
        self._watcher: asyncio.Task[None] | None = None

    async def open(self) -> None:
        """Read the revision and start watching it; call inside the event loop."""
        started = self._clock()
        with contextlib.suppress(PolicyUnavailable):
            self._revision = await self.fetch_revision()
            self._confirmed_at = started
        self._watcher = asyncio.create_task(self._watch_revision())

    async def close(self) -> None:
        """Stop watching the revision."""
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher

    async def fetch_revision(self) -> str:
        """SHA-256 (hex, first 16 digits) of the modules' sources and the policy's data tree.

        The revision is computed from OPA's canonical JSON; when OPA's two answers are byte for
        byte the ones the last revision was computed from, it is reused, because parsing and
        re-hashing some 80 KB every second was most of the gateway's idle CPU.
        """
        root = self._settings.package.split(".")[0]
        timeout = self._settings.timeout_s * 5
        try:
            modules_raw = (
                (await self._http.get("/v1/policies", timeout=timeout)).raise_for_status().content
            )
            data_raw = (
                (await self._http.get(f"/v1/data/{root}", timeout=timeout))
                .raise_for_status()
                .content
            )
            answers = (modules_raw, data_raw)
            last = self._last_answers
            if last is not None and last[0] == answers:
                return last[1]
            revision = _revision(json.loads(modules_raw), json.loads(data_raw))
        except (httpx.HTTPError, ValueError, AttributeError, TypeError) as exc:
            raise PolicyUnavailable(reason=f"opa_revision:{type(exc).__name__}") from exc
        self._last_answers = (answers, revision)
        return revision

    def _fresh_revision(self) -> str | None:
        """The revision while OPA confirmed it less than ``opa.revision_interval_s`` ago, else
        ``None`` (no cached decision then). A refusing OPA empties the cache at once; this bound
        holds for a hung one too, whose revision fetch would wait out its own timeout."""
        interval = self._settings.revision_interval_s
        if self._clock() - self._confirmed_at > interval:
            return None
        return self._revision

    async def _watch_revision(self) -> None:
        interval = self._settings.revision_interval_s
        while True:
            # Re-read a little before the revision goes stale, so a healthy OPA's cache never
            # lapses between two reads.
            since = self._clock() - self._confirmed_at
            await asyncio.sleep(min(interval, max(0.0, interval * _REREAD_AT - since)))
            started = self._clock()
            try:
                revision = await self.fetch_revision()
            except PolicyUnavailable as error:
                # Without a known revision no cached decision may stand: the policy may have
                # changed. Every request asks OPA itself until the revision can be read again.
                log.warning("could not read the policy revision: %s", error.reason)
                self._revision = None
                self._cache.clear()
                self._preflights.clear()
                continue
            self._confirmed_at = started
            if revision != self._revision:
                log.info("policy revision %s -> %s", self._revision, revision)
                self._revision = revision
                self._cache.clear()
                self._preflights.clear()

    async def _query(
        self, package: str, document: dict[str, Any], rule: str | None = None
    ) -> dict[str, Any]:
        """OPA's raw answer for ``<package>.<rule>``; any failure is PolicyUnavailable."""
        path = "/v1/data/" + package.replace(".", "/") + "/" + (rule or self._settings.rule)
        timeout = self._settings.timeout_s
        try:
            async with asyncio.timeout(timeout):
                response = await self._http.post(path, json={"input": document}, timeout=timeout)
                answer = response.raise_for_status().json()
        except (TimeoutError, httpx.TimeoutException):
            raise PolicyUnavailable(reason="opa_timeout") from None
        except Exception as exc:  # HTTP, JSON and client errors alike: fail closed
            raise PolicyUnavailable(reason=f"opa_error:{type(exc).__name__}") from exc
        if not isinstance(answer, dict):
            raise PolicyUnavailable(reason="opa_malformed_decision")
        return answer

    async def authorize_audit_read(self, identity: Identity) -> AccessDecision:
        """May ``identity`` read the audit log? Asks ``opa.audit_package``; denies by default."""
        document = {
            "version": AUDIT_INPUT_VERSION,
            "action": "audit.read",
            "identity": {**identity.as_document(), "client_id": identity.client_id},
        }
        response = await self._query(self._settings.audit_package, document)
        if "result" not in response:
            return AccessDecision(allow=False, reasons=("policy_undefined",))
        try:
            answer = _AccessAnswer.model_validate(response["result"])
        except ValidationError:
            raise PolicyUnavailable(reason="opa_malformed_decision") from None
        return AccessDecision(allow=answer.allow, reasons=tuple(answer.reasons))

    async def preflight(self, document: dict[str, Any]) -> Preflight:
        """Ask OPA's ``<package>.<preflight_rule>`` whether the DAG may use the database at all
        (before anything is planned), or the cache. Undefined is a refusal; nonsense is 503."""
        revision = self._fresh_revision()
        key = (revision, "preflight:" + _cache_key(document))
        cached = self._preflights.get(key)
        if cached is not None:
            self._preflights.move_to_end(key)
            self._lookups.labels("preflight", "hit").inc()
            return replace(cached, decision=replace(cached.decision, decision_id=str(uuid.uuid4())))
        self._lookups.labels("preflight", "miss").inc()
        response = await self._query(
            self._settings.package, document, rule=self._settings.preflight_rule
        )
        decision = Decision(
            allow=False,
            reasons=("policy_undefined",),
            decision_id=str(uuid.uuid4()),
            access_mode="READ",
            timeout_s=None,
            revision=revision,
        )
        if "result" not in response:
            return Preflight(decision, procedures=False, functions=False)
        try:
            answer = _PreflightAnswer.model_validate(response["result"])
        except ValidationError:
            raise PolicyUnavailable(reason="opa_malformed_decision") from None
        preflight = Preflight(
            replace(decision, allow=answer.allow, reasons=tuple(answer.reasons)),
            procedures=answer.procedures,
            functions=answer.functions,
        )
        if revision is not None and self._settings.decision_cache_size > 0:
            self._preflights[key] = preflight
            while len(self._preflights) > self._settings.decision_cache_size:
                self._preflights.popitem(last=False)
        return preflight

    async def decide(self, document: dict[str, Any]) -> Decision:
        """Ask OPA for ``<package>.<rule>`` on ``document``, or the cache; see the docstring."""
        revision = self._fresh_revision()
        key = (revision, _cache_key(document))
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            self._lookups.labels("decision", "hit").inc()
            return replace(cached, decision_id=str(uuid.uuid4()))
        self._lookups.labels("decision", "miss").inc()
        decision = await self._ask(document, revision)
        # Only a known revision may key the cache: otherwise a change could go unnoticed.
        if revision is not None and self._settings.decision_cache_size > 0:
            self._cache[key] = decision
            while len(self._cache) > self._settings.decision_cache_size:
                self._cache.popitem(last=False)
        return decision

    async def _ask(self, document: dict[str, Any], revision: str | None) -> Decision:
        response = await self._query(self._settings.package, document)
        decision_id = str(uuid.uuid4())
        if "result" not in response:
            return Decision(
                allow=False,
                reasons=("policy_undefined",),
                decision_id=decision_id,
                access_mode="READ",
                timeout_s=None,
                revision=revision,
            )
        try:
            answer = _Answer.model_validate(response["result"])
        except ValidationError:
            raise PolicyUnavailable(reason="opa_malformed_decision") from None
        constraints = answer.constraints
        return Decision(
            allow=answer.allow,
            reasons=tuple(answer.reasons),
            decision_id=decision_id,
            access_mode=constraints.access_mode,
            timeout_s=constraints.timeout_ms / 1000 if constraints.timeout_ms else None,
            shadow=answer.shadow,
            row_limit=constraints.row_limit,
            row_limit_action=constraints.row_limit_action,
            revision=revision,
        )

    async def check_ready(self) -> None:
        """Raise unless OPA answers its health check."""
        try:
            healthy = (await self._http.get("/health")).status_code == 200
        except Exception:  # unreachable, slow or failing: not ready
            healthy = False
        if not healthy:
            raise PolicyUnavailable(reason="opa_unhealthy")


def _revision(modules: dict[str, Any], data: dict[str, Any]) -> str:
    """The revision of OPA's ``/v1/policies`` and ``/v1/data/<root>`` answers, canonically."""
    sources = sorted((m.get("id", ""), m.get("raw", "")) for m in modules.get("result", []))
    canonical = json.dumps(
        {"modules": sources, "data": data.get("result")}, sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _cache_key(document: dict[str, Any]) -> str:
    principal = {k: v for k, v in document.get("principal", {}).items() if k not in _CONTEXT_ONLY}
    return json.dumps({**document, "principal": principal}, sort_keys=True, separators=(",", ":"))
