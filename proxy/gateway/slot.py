"""One statement's admission slot on the request path (:mod:`proxy.gateway.admission`)."""

from __future__ import annotations

from proxy.errors import Overloaded, RateLimited
from proxy.gateway.admission import Admission
from proxy.gateway.call import Call
from proxy.gateway.rates import RateLimits
from proxy.gateway.trail import Trail
from proxy.principal import Identity


class Slot:
    """The block a statement runs in: a slot taken once the client's address is within its
    rate limit (:mod:`proxy.gateway.rates`), given back when the block ends. A refusal is
    recorded as the call's one record: nothing else was done for it, not even authentication
    (under overload or a flood, a refused call must cost next to nothing, and an IAM proof
    would cost a call to STS). A class, not a generator: an async context manager made of a
    generator costs about 2 µs more, and every statement takes a slot."""

    __slots__ = ("_admission", "_call", "_held", "_owner", "_rates", "_trail")

    def __init__(self, rates: RateLimits, admission: Admission, trail: Trail, call: Call) -> None:
        self._rates = rates
        self._admission = admission
        self._trail = trail
        self._call = call
        self._owner = call.owner  # whose share the slot counts against, if anyone's yet
        self._held = True  # from __aenter__ on; False once a claim gave it back

    async def __aenter__(self) -> Slot:
        try:
            self._rates.before_verification(self._call.client)
            await self._admission.acquire(self._owner)
        except (RateLimited, Overloaded) as error:
            await self._trail.refused(error)
            raise
        return self

    async def claim(self, identity: Identity) -> None:
        """Count the slot against ``identity``'s share now that it is verified, unless the
        front door knew its caller before (a Bolt connection's): waits, or raises
        :class:`Overloaded`, if the identity is at its share (:meth:`Admission.claim`)."""
        if self._owner is not None:
            return
        owner = (identity.method, identity.issuer, identity.subject)
        self._held = False
        await self._admission.claim(owner)
        self._owner, self._held = owner, True

    async def __aexit__(self, *_: object) -> None:
        if self._held:
            self._admission.release(self._owner)
