"""The audit log: a hash-chained, append-only record of every request and what it did.

Storage only: ``record.py`` (the record and its chain), ``sqlite.py`` (the writer),
``checkpoint.py`` (signed checkpoints, parameter digests), ``reader.py`` and ``reading.py``
(queries and verification), ``archive.py`` (the WORM archive), ``export.py``. Who may read the
log is a use case beside the gateway's (:mod:`proxy.gateway.review`), not a concern of storage.

Rules: this package imports the foundation only (``proxy.values``, ``proxy.errors``,
``proxy.clock``); it never imports authentication, the policy or the request path.
"""
