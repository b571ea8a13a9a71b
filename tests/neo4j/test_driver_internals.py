"""The neo4j driver's private parts the gateway's driver path leans on, where the driver has no
public way (see proxy/neo4j/errors.py's translated_write, proxy/neo4j/driver_rows.py's
DriverRows.settle and proxy/neo4j/sockets.py). An upgrade that renames one must fail here, before
a lost write goes back to being answered as transient (and retried into running twice), a
result's batch goes unread, or a write to a connection Neo4j ended fails as the gateway's own.
"""

from __future__ import annotations

import inspect

from neo4j._async.io._bolt import AsyncBolt
from neo4j._async.work.result import AsyncResult
from neo4j._async_compat.network import AsyncBoltSocketBase

from proxy.neo4j.sockets import driver_sendall


def test_the_driver_declares_a_lost_connection_defunct_where_the_gateway_looks() -> None:
    assert callable(getattr(AsyncBolt, "_set_defunct", None))
    assert callable(getattr(AsyncBolt, "fetch_message", None))


def test_a_result_keeps_the_state_the_gateway_reads() -> None:
    made = inspect.getsource(AsyncResult.__init__)
    for attribute in ("_attached", "_streaming", "_has_more", "_connection"):
        assert f"self.{attribute} =" in made, attribute


def test_the_driver_writes_through_the_stream_the_gateway_checks() -> None:
    """proxy/neo4j/sockets.py wraps this method and reads this attribute."""
    assert callable(AsyncBoltSocketBase.sendall)
    assert "self._writer.write(" in inspect.getsource(driver_sendall())
