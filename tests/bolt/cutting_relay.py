"""A TCP relay to Neo4j's Bolt port that forwards one chosen message and then cuts its
connection without passing Neo4j's answer on: Neo4j does what it was told, its sender never
hears how it ended (a lost COMMIT, a lost auto-commit RUN). :func:`gateway_behind` serves a
second gateway whose Neo4j is reached through one."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from neo4j import Driver

from proxy.devstack.stack import DevStack
from proxy.ports import free_ports
from tests.second_gateway import SecondGateway


class CuttingRelay:
    """Relays every connection to the Bolt server at ``bolt_uri``; :meth:`_cuts_here` (a
    subclass's) says which data from the client is forwarded as the last before that connection
    is cut."""

    def __init__(self, bolt_uri: str) -> None:
        host, port = bolt_uri.removeprefix("bolt://").rsplit(":", 1)
        self._target = (host, int(port))
        self._listener = socket.create_server(("127.0.0.1", free_ports(1)[0]))
        self.port = self._listener.getsockname()[1]
        self.cuts = 0
        self.connections: list[socket.socket] = []  # the relay's side of each client's
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._listener.close()

    def _cuts_here(self, data: bytes) -> bool:
        raise NotImplementedError

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self._target)
            self.connections.append(client)
            cut = threading.Event()
            threading.Thread(target=self._up, args=(client, server, cut), daemon=True).start()
            threading.Thread(target=self._down, args=(server, client, cut), daemon=True).start()

    def _up(self, client: socket.socket, server: socket.socket, cut: threading.Event) -> None:
        try:
            while data := client.recv(65536):
                if self._cuts_here(data):
                    cut.set()
                    server.sendall(data)
                    time.sleep(0.5)  # Neo4j does it; its answer is dropped
                    self.cuts += 1
                    break
                server.sendall(data)
        except OSError:
            pass
        for side in (client, server):
            side.close()

    def _down(self, server: socket.socket, client: socket.socket, cut: threading.Event) -> None:
        try:
            while data := server.recv(65536):
                if not cut.is_set():
                    client.sendall(data)
        except OSError:
            pass
        for side in (client, server):
            side.close()


class EndingRelay(CuttingRelay):
    """Relays every connection until :meth:`end_all` ends them, as Neo4j (or a firewall) ends a
    connection that sits idle."""

    def _cuts_here(self, data: bytes) -> bool:
        return False

    def end_all(self, *, reset: bool) -> None:
        """End every connection towards its client with a TCP reset (``reset``) or an orderly
        close, and towards Neo4j with a close."""
        while self.connections:
            client = self.connections.pop()
            with contextlib.suppress(OSError):
                if reset:  # closed with unsent data discarded: a RST
                    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                client.shutdown(socket.SHUT_RD)  # wakes its relaying thread, which closes both


@contextlib.contextmanager
def gateway_behind(
    relay: CuttingRelay, stack: DevStack, folder: Path, name: str, *, relays: bool
) -> Iterator[SecondGateway]:
    """A second gateway, with a Bolt door, that reaches Neo4j through ``relay``; with ``relays``
    its own Bolt and HTTP relays, else the driver path. Stopped, and ``relay`` closed, on exit."""

    def configure(config: dict[str, Any]) -> None:
        config["neo4j"]["uri"] = f"bolt://127.0.0.1:{relay.port}"
        config["neo4j"]["bolt_relay"] = relays
        config["neo4j"]["http_relay"] = relays

    second = SecondGateway(stack, folder, name, configure, bolt=True)
    try:
        second.start()
        yield second
    finally:
        second.stop()
        relay.close()


def count_marked(neo4j_admin: Driver, marker: str) -> int:
    """How many ``:BoltDoor`` nodes are named ``marker``."""
    found, _, _ = neo4j_admin.execute_query(
        "MATCH (n:BoltDoor {name: $m}) RETURN count(n) AS c", m=marker
    )
    return int(found[0]["c"])
