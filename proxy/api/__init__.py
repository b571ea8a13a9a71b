"""The HTTP front doors: each translates its wire format into a use case's call, and back.

- ``query.py``: Neo4j's Query API v2 (``/db/{database}/query/v2``) and the driver's discovery;
- ``transactions.py``: its explicit transactions (``/query/v2/tx``), held open between
  requests by ``held.py``;
- ``audit_routes.py``: the reviewers' HTTP API; ``audit_page.py``: the reviewers' page;
- ``operations.py``: ``/healthz``, ``/readyz``, ``/metrics``;
- ``errors.py``: the one place an error becomes a response;
- ``state.py``: the application's typed state (:class:`~proxy.api.state.Runtime`), which the
  lifespan in ``proxy/app/`` makes, and the request's own (its request id, its client, its
  headers as HTTP combines a field sent twice).

Rules: routes are module-level; they take what they need from :func:`proxy.api.state.runtime`,
never from settings, and call the use cases of ``proxy/gateway/``, never a wing directly.
"""
