"""The driver's writes to a connection Neo4j ended, made to fail as the driver expects under
uvloop too.

The gateway serves on uvloop (the ``uvloop`` requirement: less CPU per statement). A write to a
transport that has closed (Neo4j, or a firewall between, reset the connection while it sat in the
driver's pool) is dropped by asyncio, whose next drain raises :class:`ConnectionResetError`; the
driver takes that ``OSError`` for a lost connection: it declares it defunct, never pools it again,
and raises ``ServiceUnavailable`` (503 here). uvloop raises :class:`RuntimeError` instead, which
the driver passes through untouched: the statement failed as the gateway's own error (500), the
dead connection went back to the pool for the next statement, and closing the driver at shutdown
failed on it. :func:`refuse_writes_to_closed_transports` makes the driver's socket raise the
``OSError`` before writing to a closed transport, on either loop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from neo4j._async_compat.network import AsyncBoltSocketBase

# Set on the driver's class once it is wrapped: the driver's own method.
_PATCHED = "_cyphergate_driver_sendall"


def refuse_writes_to_closed_transports() -> None:
    """Wrap the driver's ``AsyncBoltSocketBase.sendall`` once (see the module docstring): one
    ``is_closing()`` per write the driver flushes."""
    if getattr(AsyncBoltSocketBase, _PATCHED, None) is not None:
        return
    sendall = AsyncBoltSocketBase.sendall

    async def sendall_if_open(self: Any, data: bytes) -> Any:
        if self._writer.transport.is_closing():
            raise ConnectionResetError("the connection to Neo4j was closed")
        return await sendall(self, data)  # type: ignore[no-untyped-call]

    # The driver's class, patched once for the process: the driver offers no seam for it.
    AsyncBoltSocketBase.sendall = sendall_if_open  # type: ignore[method-assign]
    setattr(AsyncBoltSocketBase, _PATCHED, sendall)


def driver_sendall() -> Callable[..., Any]:
    """The driver's own ``sendall``, wrapped or not (for the test that pins what it reads)."""
    own: Callable[..., Any] = getattr(AsyncBoltSocketBase, _PATCHED, AsyncBoltSocketBase.sendall)
    return own
