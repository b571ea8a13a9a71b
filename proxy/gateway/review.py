"""Reviewers reading the audit log through the gateway: who may, and what they get.

Reading is itself audited: every attempt leaves an ``access`` record (written before the log is
read), so reviewers are reviewed too. Only identities the policy grants (``opa.audit_package``)
may read; DAG identities are refused unless a security team lists them, which it should not.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from proxy.audit.checkpoint import signature_valid
from proxy.audit.reader import RecordFilter
from proxy.audit.record import AuditEvent, ChainProblem, concluded, utc_timestamp
from proxy.clock import Clock
from proxy.errors import CypherGateError, PolicyDenied, RecordNotProvable
from proxy.gateway.rates import RateLimits
from proxy.gateway.seams import AuditAccessPolicy, AuditLog, AuditReading, CallerAuthenticator
from proxy.principal import Identity
from proxy.settings import RateLimitSettings

# Proves who is asking: a bearer credential checked by the gateway's authenticators, or a
# signed-in session of the reviewers' page. Raises AuthenticationFailed when it cannot.
IdentityProof = Callable[[], Awaitable[Identity]]


@dataclass(frozen=True, slots=True)
class ChainStatus:
    """The state of the log as a reviewer's page shows it, without a full verification."""

    records: int
    head_seq: int | None
    checkpoints: int
    last_checkpoint: dict[str, Any] | None
    # None when the gateway has no signing key to check with.
    last_signature_valid: bool | None
    unsealed: int


class AuditReview:
    """Authorises reviewers and answers their queries, through a reading of the log."""

    def __init__(
        self,
        *,
        authenticator: CallerAuthenticator,
        policy: AuditAccessPolicy,
        audit: AuditLog,
        reading: AuditReading,
        clock: Clock,
        public_key: Ed25519PublicKey | None = None,
        rates: RateLimits | None = None,
        sealed_within_s: float | None = None,
    ) -> None:
        self._authenticator = authenticator
        self._policy = policy
        self._audit = audit
        self._reading = reading
        self._clock = clock
        self._public_key = public_key
        self._rates = rates or RateLimits(RateLimitSettings())
        # A writer signs its tail within its checkpoint interval: older unsigned records were
        # rewritten (twice the interval, as `audit verify --config` allows).
        self._sealed_within_s = sealed_within_s

    def bearer(self, authorization: str | None) -> IdentityProof:
        """The proof of identity carried by an ``Authorization`` header."""
        return lambda: self._authenticator.authenticate(authorization)

    async def authorize(
        self,
        prove: IdentityProof,
        request_id: str,
        client: str | None,
        *,
        refusal: CypherGateError | None = None,
        lookup: Callable[[], Awaitable[object]] | None = None,
    ) -> Identity:
        """The caller, if the policy lets it read the log; raise otherwise. Recorded either way.

        ``refusal`` (a request the caller got wrong, such as an unreadable filter) is raised
        and recorded once the caller may read, and only then: who may not read learns nothing
        about their request but that, and every request leaves its record. ``lookup`` (finding
        what was asked for) runs then too, before the record is written: the error it raises (a
        record that cannot be proven) is the status recorded, not a read that succeeded.
        """
        started = self._clock()
        event = AuditEvent(
            event="access", time=utc_timestamp(started), request_id=request_id, client=client
        )
        error: CypherGateError | None = None
        identity: Identity | None = None
        try:
            # The client's rate limit, before a bearer credential is verified (an IAM proof
            # costs an STS call): reviewers' calls count with the doors' (gateway/rates.py).
            self._rates.before_verification(client)
            identity = await prove()
            event = replace(event, principal={**identity.as_document(), "dag": None})
            decision = await self._policy.authorize_audit_read(identity)
            event = replace(
                event,
                decision={
                    "allow": decision.allow,
                    "reasons": list(decision.reasons),
                    "decision_id": str(uuid.uuid4()),
                },
            )
            if not decision.allow:
                error = PolicyDenied(list(decision.reasons))
            elif refusal is not None:
                error = refusal
            elif lookup is not None:
                await lookup()
        except CypherGateError as caught:
            error = caught
        except Exception:  # a failure of its own (reading the log, a bug): recorded, then raised
            await self._record(event, started, CypherGateError(reason="internal"))
            raise
        await self._record(event, started, error)
        if error is not None:
            raise error
        if identity is None:  # prove() returned or raised; both are handled above
            raise AssertionError("unreachable")
        return identity

    async def _record(
        self, event: AuditEvent, started: float, error: CypherGateError | None
    ) -> None:
        await self._audit.append(
            concluded(
                event,
                started=started,
                now=self._clock(),
                status=200 if error is None else error.status,
                error=None if error is None else error.as_document(),
            )
        )

    async def chains(self) -> list[str]:
        """The chains of the log (one per worker of the replica), the default first."""
        return await self._reading.chains()

    async def records(self, flt: RecordFilter, chain: str | None = None) -> dict[str, Any]:
        """One page of records of ``chain`` (``None``: the first), oldest first, where the next
        page starts, and which chains there are."""
        chains = await self._reading.chains()
        records = await self._reading.query(flt, chain)
        after = records[-1]["seq"] if len(records) == flt.limit else None
        return {
            "chain": chain or chains[0],
            "chains": chains,
            "records": records,
            "next_after": after,
        }

    async def proof(self, seq: int, chain: str | None = None) -> dict[str, Any]:
        """The links and signed checkpoint that prove record ``seq`` of ``chain``."""
        proof = await self._reading.proof(seq, chain)
        if proof is None:
            raise RecordNotProvable(reason="record_not_provable")
        return proof

    async def record(self, seq: int, chain: str | None = None) -> dict[str, Any] | None:
        """Record ``seq`` with the other records of its request; ``None`` if there is none."""
        return await self._reading.record(seq, chain)

    async def status(self, chain: str | None = None) -> ChainStatus:
        """Record count, head and newest checkpoint, with its signature checked if possible (a
        checkpoint of another chain, another worker's, is no valid one of this chain)."""
        name = chain or (await self._reading.chains())[0]
        head, checkpoints = await self._reading.head(name)
        last = checkpoints[-1] if checkpoints else None
        head_seq = head[0] if head else None
        return ChainStatus(
            # Sequence numbers run 1, 2, 3... without a gap (verify checks it): no count.
            records=head_seq or 0,
            head_seq=head_seq,
            checkpoints=len(checkpoints),
            last_checkpoint=None if last is None else asdict(last),
            last_signature_valid=(
                None
                if last is None or self._public_key is None
                else last.chain == name and signature_valid(last, self._public_key)
            ),
            unsealed=(head_seq or 0) - (last.record_seq if last else 0),
        )

    async def verify(self, chain: str | None = None) -> tuple[int, ChainProblem | None]:
        """Verify a whole chain as `audit verify --config` does: how many records verified, and
        the first problem if any."""
        window = self._sealed_within_s
        sealed_before = None if not window else utc_timestamp(self._clock() - window)
        return await self._reading.verify(self._public_key, chain, sealed_before=sealed_before)

    async def denials_by_dag(
        self, since: str, chain: str | None = None
    ) -> dict[str | None, dict[str, int]]:
        """Refused requests since ``since`` per DAG and hour (see AuditReader.denials_by_dag)."""
        return await self._reading.denials_by_dag(since, chain)
