"""The neo4j driver's private parts the gateway's driver path leans on, where the driver has no
public way (see proxy/neo4j/errors.py's translated_write and proxy/neo4j/executor.py's
DriverRows.settle). An upgrade that renames one must fail here, before a lost write goes back to
being answered as transient (and retried into running twice) or a result's batch goes unread.
"""

from __future__ import annotations

import inspect

from neo4j._async.io._bolt import AsyncBolt
from neo4j._async.work.result import AsyncResult


def test_the_driver_declares_a_lost_connection_defunct_where_the_gateway_looks() -> None:
    assert callable(getattr(AsyncBolt, "_set_defunct", None))
    assert callable(getattr(AsyncBolt, "fetch_message", None))


def test_a_result_keeps_the_state_the_gateway_reads() -> None:
    made = inspect.getsource(AsyncResult.__init__)
    for attribute in ("_attached", "_streaming", "_has_more", "_connection"):
        assert f"self.{attribute} =" in made, attribute
