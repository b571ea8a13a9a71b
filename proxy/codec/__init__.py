"""Bolt's codec: PackStream, the wire's framing and handshake, and values as the driver holds
them. Both sides of the gateway speak it: the Bolt door to its callers (:mod:`proxy.bolt`) and the
relay to Neo4j (:mod:`proxy.neo4j.bolt`)."""
