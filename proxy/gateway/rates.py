"""Rate limits per client address, per identity and per DAG (``server.rate_limits``).

Each limit is a moving window (the ``limits`` library, in memory): at most ``requests`` calls in
any ``window_s`` seconds for one key. Two moments on the request path:

* **before verification**, keyed by the **client address** (an IPv6 address by its /64, which
  one host usually holds whole). Verifying a credential can cost a round trip (an IAM proof is
  one STS call unless the same proof was verified moments ago), and an attacker can make any
  number of well-formed proofs; so a call is counted, and refused over the limit, before its
  credential is looked at. It is not keyed by what the credential *claims* (an access key id,
  a token's subject): anyone can claim anyone, and would exhaust their victim's quota for free.
  Nor by the credential's digest alone: a flood of distinct proofs has as many digests.
* **after verification**, keyed by the **verified identity** (issuer and subject) and by the
  **DAG** acted as: what one workload may ask of the graph, whatever address it calls from.

A refusal is :class:`~proxy.errors.RateLimited` (429, ``Retry-After`` the seconds until the
window has room again; over Bolt a transient ``FAILURE``), recorded like any refusal with reason
``rate_limited:client``, ``:identity`` or ``:dag``. Each worker of ``server.workers`` keeps its
own counts, so a replica of N workers lets through up to N times a limit.
"""

from __future__ import annotations

import ipaddress
import math
import time

from limits import RateLimitItem, RateLimitItemPerSecond
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from proxy.errors import RateLimited
from proxy.principal import Identity, Principal
from proxy.settings import RateLimitSettings, RateSettings

_UNKNOWN_CLIENT = "unknown"


class RateLimits:
    """The limits of one process (see the module docstring); shared by both front doors."""

    def __init__(self, settings: RateLimitSettings) -> None:
        self._client = _item(settings.per_client)
        self._identity = _item(settings.per_identity)
        self._dag = _item(settings.per_dag)
        # The library's memory storage expires old calls on a short timer thread, started again
        # after a call when it has ended (at most one at a time, about one per 10 ms under
        # load); none at all without a limit.
        given = (self._client, self._identity, self._dag)
        self._limiter = None
        if any(item is not None for item in given):
            self._limiter = MovingWindowRateLimiter(MemoryStorage())

    def before_verification(self, client: str | None) -> None:
        """Count a call from ``client`` (``host:port`` or a bare address; None: unknown);
        raise :class:`RateLimited` if its address is over its limit."""
        if self._client is not None:
            self._hit(self._client, "client", client_key(client))

    def may_verify(self, client: str | None) -> bool:
        """Whether ``client`` is within its limit now, without counting a call: for a front
        door that records a refusal and would verify the credential only to name the caller."""
        if self._client is None or self._limiter is None:
            return True
        return self._limiter.test(self._client, "client", client_key(client))

    def after_verification(self, identity: Identity, principal: Principal) -> None:
        """Count a verified call of ``identity`` acting as ``principal``'s DAG; raise
        :class:`RateLimited` if either is over its limit (the identity's is counted first, and
        a call it refuses is not counted against the DAG)."""
        if self._identity is not None:
            self._hit(self._identity, "identity", identity.issuer, identity.subject)
        if self._dag is not None:
            self._hit(self._dag, "dag", principal.dag)

    def _hit(self, item: RateLimitItem, which: str, *key: str) -> None:
        if self._limiter is None or self._limiter.hit(item, which, *key):
            return  # (no limiter: no limit either, the constructor made sure)
        reset_at = self._limiter.get_window_stats(item, which, *key).reset_time
        retry_after_s = max(1, math.ceil(reset_at - time.time()))
        raise RateLimited(retry_after_s=retry_after_s, reason=f"rate_limited:{which}")


def _item(settings: RateSettings | None) -> RateLimitItem | None:
    if settings is None:
        return None
    return RateLimitItemPerSecond(settings.requests, settings.window_s)


def client_key(client: str | None) -> str:
    """The key of a client address: the address without its port, an IPv6 one by its /64 (a
    host commonly holds a whole /64 and could otherwise take a fresh quota per address)."""
    if not client:
        return _UNKNOWN_CLIENT
    host = client
    if client.startswith("["):  # [v6]:port
        host = client[1 : client.find("]")]
    elif client.count(":") == 1:  # v4:port
        host = client.partition(":")[0]
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)
